"""Every field of the eval and export options dataclasses is a command-line flag that reaches the code."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import get_args, get_type_hints

import pytest

from endogs.cli import main
from endogs.eval.cli import eval_run
from endogs.eval.evaluate import EvalOptions
from endogs.export.cli import export
from endogs.eval.protocol import ProtocolName
from endogs.export.exporter import ExportOptions

COMMANDS = {"eval": eval_run, "export": export}


def help_text(cmd: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"], commands=COMMANDS)
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("cmd,cls", [("eval", EvalOptions), ("export", ExportOptions)])
def test_every_option_is_in_help(cmd, cls, capsys, monkeypatch):
    text = help_text(cmd, capsys, monkeypatch)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, (cmd, flag)
    assert "--quiet" in text and "--options." not in text


def test_export_flags_reach_the_options(monkeypatch, tmp_path, capsys):
    import endogs.export.exporter as X

    seen = {}

    def fake_export_run(run, opt):
        seen["opt"] = opt
        return {"exports": {"mesh": {"files": []}}}

    monkeypatch.setattr(X, "export_run", fake_export_run)
    args = ["export", str(tmp_path), "--what", "mesh", "--view-radius", "0.2", "--min-component", "0.1",
            "--depth-scale", "100", "--mesh-format", "obj", "--no-mask-tools", "--quiet"]
    assert main(args, commands=COMMANDS) == 0
    o = seen["opt"]
    assert (o.what, o.view_radius, o.min_component, o.depth_scale, o.mesh_format, o.mask_tools, o.progress) == \
        (("mesh",), 0.2, 0.1, 100.0, "obj", False, False)
    assert capsys.readouterr().out.strip() == f"index: {tmp_path / 'export' / 'index.json'}"
    assert main(["export", str(tmp_path), "--min-component", "2"], commands=COMMANDS) == 2
    assert "--min-component must be in [0, 1)" in capsys.readouterr().err


def test_eval_flags_reach_the_options(monkeypatch, tmp_path, capsys):
    import endogs.eval.pipeline as E

    seen = {}

    def fake_evaluate_run(run, opt, log):
        seen["opt"] = opt
        return SimpleNamespace(out_dir=Path(run) / "eval_x", report={})

    monkeypatch.setattr(E, "evaluate_run", fake_evaluate_run)
    args = ["eval", str(tmp_path), "--split", "train", "--protocol", "native", "--fps-warmup", "0", "--no-plots",
            "--video-fps", "24", "--fps-max-renders", "5", "--quiet"]
    assert main(args, commands=COMMANDS) == 0
    o = seen["opt"]
    assert (o.split, o.protocol, o.fps_warmup, o.plots, o.video_fps, o.fps_max_renders) == ("train", "native", 0, False, 24.0, 5)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # the choices are the one enumeration's
        main(["eval", str(tmp_path), "--protocol", "nope"], commands=COMMANDS)
    assert e.value.code == 2 and str(get_args(ProtocolName)) in " ".join(capsys.readouterr().err.split())


def test_enumerations_are_read_from_their_one_definition():
    from endogs.data import _LOADERS, FORMATS, FormatName
    from endogs.eval.protocol import PROTOCOL_NAMES, PROTOCOLS
    from endogs.train.config import DataOptions

    assert FORMATS == get_args(FormatName) == tuple(_LOADERS)
    assert set(PROTOCOL_NAMES) == set(PROTOCOLS) | {"auto"}
    literal, none = get_args(get_type_hints(DataOptions)["format"])  # Optional[...]
    assert none is type(None) and get_args(literal) == FORMATS  # the config offers exactly the formats
