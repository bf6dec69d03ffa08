"""The viewer under load (scripts/viewer_load.py): 16 websocket clients speaking viser's protocol move the
camera, scrub time, switch modes, send malformed messages and drop their connections; the viewer keeps
rendering, its memory stays bounded and the process lives. Sized for CI (~25 s of load)."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from scripts import viewer_load as vl
from test_viewer import make_tiny_run

pytestmark = pytest.mark.filterwarnings("ignore:`control_layout` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.getbasetemp() / "viewer_tiny_run")


def test_sixteen_clients_with_disconnects_and_garbage(run):
    r = vl.load_test(run, clients=16, seconds=25, seed=3)
    assert r["alive"] and r["exit_code"] is None, r
    # every kind of action happened, many times
    assert set(r["actions"]) == {"camera", "scrub", "mode", "malformed", "abort"}, r["actions"]
    assert min(r["actions"].values()) >= 5, r["actions"]
    assert r["reconnects"] >= r["actions"]["abort"] and r["connect_failures"] == 0, r
    # it kept rendering for everyone: most camera moves got their image back
    assert r["images"] >= 0.8 * r["actions"]["camera"], r
    assert np.isfinite(r["render_ms_p50"]) and r["render_ms_p95"] >= r["render_ms_p50"] > 0
    # a fresh tab afterwards is served promptly
    assert r["final_image_s"] is not None and r["final_image_s"] < 15, r
    # memory stays bounded: the snapshot cache is capped and disconnected clients' renderers are dropped
    assert r["rss_mib_peak"] < r["rss_mib_start"] + 1024, r
    print(f"\nviewer load: {r}", file=sys.stderr)


def test_client_protocol_round_trip(run):
    """The harness speaks the real protocol: the GUI handles are found and a camera gives an image of its size."""
    import viser

    proc, url, _ = vl.start_viewer(run, vl.free_port())
    try:
        c = vl.Client(url, viser.__version__)
        c.pump(1.0)
        assert {"Time", "Mode"} <= set(c.uuids), sorted(c.uuids)[:20]
        c.send(vl.camera_message(random.Random(0), np.zeros(3), size=(160, 120)))
        assert c.wait_image(30.0) is not None
        # a wrong-version client is refused, the server stays up
        with pytest.raises(Exception):
            bad = vl.Client(url, "0.0.0")
            bad.ws.recv(timeout=5)
        c2 = vl.Client(url, viser.__version__)
        c2.pump(0.5)
        c2.send(vl.camera_message(random.Random(1), np.zeros(3)))
        assert c2.wait_image(30.0) is not None
        c.ws.close()
        c2.ws.close()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)


def test_all_interfaces_keeps_its_warning(monkeypatch, capsys, tmp_path):
    """`endogs view --host 0.0.0.0` warns that anyone on the network can open it (checked without binding)."""
    import endogs.viewer.cli as vcli

    closed = []

    class FakeLoaded:
        run_dir, step, device = tmp_path, 7, type("D", (), {"type": "cpu"})()
        scene = type("S", (), {"num_gaussians": 12})()

    class FakeApp:
        url, loaded = "http://0.0.0.0:1234", FakeLoaded()

        def close(self):
            closed.append(True)

    seen = {}

    def fake_open(run, host, port, next_free_port, device):
        seen["host"] = host
        return FakeApp()

    def interrupt(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(vcli, "open_viewer", fake_open)
    monkeypatch.setattr(vcli.time, "sleep", interrupt)
    vcli.view(tmp_path, host="0.0.0.0", port=1234)
    err = capsys.readouterr().err
    assert seen["host"] == "0.0.0.0" and closed == [True]
    assert "endogs view: listening on all interfaces (0.0.0.0); anyone on the network can open it" in err
    vcli.view(tmp_path, host="127.0.0.1", port=1234)
    assert "all interfaces" not in capsys.readouterr().err
