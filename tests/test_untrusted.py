"""Untrusted files: a checkpoint carrying a pickle payload, links out of a scene folder, names that would escape
a batch OUTPUT folder. Each is refused with one line and exit status 2, and nothing of it runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import data_fixtures as fx
from scripts import fuzz_inputs as fz


def run_cli(argv, commands=None) -> fz.Outcome:
    return fz.run_in_process(fz.Case("untrusted", "t", [str(a) for a in argv], commands), timeout=120)


def one_line_error(o: fz.Outcome) -> str:
    assert o.problem() is None and o.rc == 2, (o.rc, o.stderr, o.crash)
    return o.stderr.strip()


class Payload:
    """Unpickling this object runs ``exec``, which writes the marker file: a real malicious pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from endogs.config_io import merge
    from endogs.train.config import TrainConfig
    from endogs.train.trainer import Trainer

    base = tmp_path_factory.mktemp("untrusted")
    fx.endonerf(base / "scene", n=4)
    cfg = merge(TrainConfig(), {"iterations": 3, "device": "cpu", "init": {"max_points": 300}})
    Trainer.create(cfg, base / "scene", base / "run").train(progress=False)
    return base / "run"


def test_pickle_payload_in_a_checkpoint_is_refused_and_never_runs(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    marker = tmp_path / "payload_ran"
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({**good, "extra": Payload(marker)}, run / "checkpoint.pt")
    for argv in (["eval", run], ["export", run, "--out", tmp_path / "exp"], ["train", "--resume", run, "--quiet"]):
        msg = one_line_error(run_cli(argv))
        # eval peeks at the checkpoint first and says so in its own words; every command names the file
        assert msg.startswith(f"endogs: error: {run / 'checkpoint.pt'}: "), (argv, msg)
        assert "corrupt or not an endogs checkpoint" in msg, (argv, msg)
        assert not marker.exists(), f"{argv}: the payload ran"
    assert not (tmp_path / "exp").exists()
    # the payload is real: an unsafe load would have run it
    torch.load(run / "checkpoint.pt", weights_only=False)
    assert marker.read_text() == "pwned"


def test_links_out_of_a_scene_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes((tmp_path / "x").write_bytes(b"") or b"not an image")

    root = tmp_path / "file_link"
    fx.endonerf(root)
    img = root / "images" / "frame-000003.color.png"
    img.unlink()
    img.symlink_to(outside / "secret.png")
    msg = one_line_error(run_cli(["info", root]))
    assert msg == (f"endogs: error: {img}: is a symbolic link to {outside / 'secret.png'}, outside the scene folder {root}; "
                   "endogs does not follow links out of a scene: copy the data in (cp -L) or point endogs at the real folder")

    root = tmp_path / "etc_passwd"
    fx.endonerf(root)
    depth = root / "depth" / "frame-000000.depth.png"
    depth.unlink()
    depth.symlink_to("../../../../../../../../etc/passwd")
    assert "is a symbolic link to /etc/passwd, outside the scene folder" in one_line_error(run_cli(["info", root]))

    root = tmp_path / "folder_link"
    fx.endonerf(root)
    shutil.move(root / "masks", outside / "masks")
    (root / "masks").symlink_to(outside / "masks")
    assert f"{root / 'masks'}: is a symbolic link to {outside / 'masks'}" in one_line_error(run_cli(["info", root]))

    root = tmp_path / "meta_link"
    fx.endonerf(root)
    (outside / "meta.json").write_text(json.dumps({"fx": 25.0}))
    (root / "endogs_scene.json").symlink_to(outside / "meta.json")
    assert "endogs_scene.json: is a symbolic link to" in one_line_error(run_cli(["info", root]))

    root = tmp_path / "poses_link"
    fx.endonerf(root)
    shutil.move(root / "poses_bounds.npy", outside / "poses_bounds.npy")
    (root / "poses_bounds.npy").symlink_to(outside / "poses_bounds.npy")
    assert "poses_bounds.npy: is a symbolic link to" in one_line_error(run_cli(["info", root]))


def test_links_inside_a_scene_and_a_linked_scene_folder_still_load(tmp_path):
    root = tmp_path / "real"
    fx.endonerf(root)
    spare = root / "spare"
    spare.mkdir()
    img = root / "images" / "frame-000002.color.png"
    shutil.move(img, spare / img.name)
    img.symlink_to(Path("..") / "spare" / img.name)  # stays inside the scene
    (tmp_path / "alias").symlink_to(root)  # the scene folder itself may be a link
    for path in (root, tmp_path / "alias"):
        o = run_cli(["info", path])
        assert o.rc == 0 and o.problem() is None, o.stderr
        assert "frames      10" in o.stdout


def test_spec_names_that_would_escape_the_output_folder_are_refused(tmp_path):
    scene = tmp_path / "scene"
    fx.endonerf(scene, n=3)
    out = tmp_path / "out"
    cases = {
        "input": {"inputs": [{"scene": str(scene), "name": ".."}]},
        "input-slash": {"inputs": [{"scene": str(scene), "name": "../../etc"}]},
        "config": {"inputs": [{"scene": str(scene)}], "configs": [{"name": "..", "preset": "fast"}]},
        "hidden": {"inputs": [{"scene": str(scene), "name": ".hidden"}]},
        "batch": {"name": "..", "inputs": [{"scene": str(scene)}]},
    }
    for what, body in cases.items():
        spec = tmp_path / f"{what}.yaml"
        spec.write_text(yaml.safe_dump(body))
        msg = one_line_error(run_cli(["spec", spec, "--out", out], fz.PROBES))
        assert msg.startswith(f"endogs: error: {spec}: ") and "may use only letters, digits" in msg, (what, msg)
    assert not out.exists()
    # a plain name still plans
    spec = tmp_path / "ok.yaml"
    spec.write_text(yaml.safe_dump({"inputs": [{"scene": str(scene), "name": "case.1"}]}))
    o = run_cli(["spec", spec, "--out", out], fz.PROBES)
    assert o.rc == 0 and o.problem() is None, o.stderr


def test_a_spec_entry_that_is_a_file_not_a_scene(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"inputs": [{"scene": "/etc/passwd"}]}))
    msg = one_line_error(run_cli(["spec", spec, "--out", tmp_path / "o"], fz.PROBES))
    assert "inputs[0]: no such scene folder /etc/passwd" in msg
    assert os.path.isfile("/etc/passwd")
