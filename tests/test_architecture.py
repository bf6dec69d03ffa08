"""The shape of the source tree: no import cycle, the layers that only read runs do not import the
training loop, and only endogs/run.py spells a run folder's file names. (Reading a run's config
imports the strategy config, which is gsplat's DefaultStrategy subclass, so gsplat's strategy
module is loaded; its rasterizer is not used by the readers.)"""

from __future__ import annotations

import ast
import subprocess
import sys

import import_graph as G

KNOWN_CYCLES: list[list[str]] = []

TRAINING = {"endogs.train.trainer"}
# Modules that only read runs. (endogs.eval.benchmark, endogs.batch.task and endogs.video.cli train, so
# they import the trainer inside the function that trains.)
READERS = ("endogs.eval", "endogs.export", "endogs.viewer")
TRAINS = {"endogs.eval", "endogs.eval.benchmark", "endogs.eval.cli", "endogs.viewer.live"}  # endogs.eval: run_benchmark


def test_graph_resolves_relative_and_from_imports():
    g = G.graph(lazy=False)
    assert "endogs.viewer.core" in g["endogs.viewer.app"]  # from .core import ...
    assert "endogs.run" in g["endogs.train.trainer"]
    assert "endogs.model.scene" in g["endogs.model"]  # the package re-exports its modules
    assert "endogs.train.trainer" in G.graph(lazy=True)["endogs.eval.benchmark"]  # inside a function


def test_no_import_cycle():
    for lazy in (False, True):
        found = [c for c in G.cycles(G.graph(lazy)) if c not in KNOWN_CYCLES]
        assert found == [], f"import cycles ({'with' if lazy else 'without'} function-level imports): {found}"


def test_evaluation_and_report_do_not_import_each_other():
    g = G.graph(lazy=True)
    assert "endogs.eval.report" not in G.reachable(g, "endogs.eval.evaluate")
    assert "endogs.eval.evaluate" not in G.reachable(g, "endogs.eval.report")
    assert {"endogs.eval.evaluate", "endogs.eval.report"} <= g["endogs.eval.pipeline"]


def test_readers_do_not_reach_the_training_loop():
    g = G.graph(lazy=True)
    readers = [m for m in g if m.startswith(READERS) and m not in TRAINS]
    assert "endogs.eval.evaluate" in readers and "endogs.export.exporter" in readers and "endogs.viewer.cli" in readers
    for m in readers:
        bad = G.reachable(g, m) & TRAINING
        assert not bad, f"{m} reaches {sorted(bad)}"


def test_importing_the_readers_does_not_load_the_trainer():
    code = ("import sys; import endogs.eval.evaluate, endogs.eval.report, endogs.export.exporter, endogs.run, "
            "endogs.viewer.cli, endogs.viewer.app, endogs.batch.runner, endogs.video.cli; "
            "print(sorted(m for m in sys.modules if m in %r))" % (sorted(TRAINING),))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=G.ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


RUN_NAMES = ("run.yaml", "log.jsonl", "checkpoint.pt", "done.json", "task.log", "metrics.json", "report.md")


def _strings(tree: ast.AST):
    """(line, text) of every string constant that is not a docstring; f-string parts included."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
            if node.right.value == "export":  # RUN / "export": the export folder
                yield node.lineno, "/export"
        if isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
            if any(p.endswith("eval_") for p in parts):  # f"eval_{split}": the evaluation folder
                yield node.lineno, "eval_{split}"


def offending_literals() -> list[str]:
    out = []
    for pkg in ("endogs", "scripts"):
        for f in sorted((G.ROOT / pkg).rglob("*.py")):
            if f == G.ROOT / "endogs" / "run.py":
                continue
            for line, s in _strings(ast.parse(f.read_text())):
                if s in ("/export", "eval_{split}") or any(n in s for n in RUN_NAMES):
                    out.append(f"{f.relative_to(G.ROOT)}:{line}: {s!r}")
    return out


def test_only_the_run_module_spells_run_file_names():
    assert offending_literals() == []


def test_the_literal_scan_finds_what_it_looks_for():
    src = 'x = run / "checkpoint.pt"\ny = f"eval_{split}"\nz = run / "export"\ndef f():\n    "a run.yaml docstring"\n'
    found = [s for _, s in _strings(ast.parse(src))]
    assert {"/export", "checkpoint.pt", "eval_{split}"} <= set(found)
    assert not any("run.yaml" in s for s in found)  # docstrings are prose (CLI help), not file access
