#!/usr/bin/env python
"""Load test of ``endogs view``: many websocket clients speaking viser's protocol against one viewer.

    python scripts/viewer_load.py --demo outputs/viewer_load --clients 16 --seconds 300
    python scripts/viewer_load.py RUN_DIR --clients 16 --seconds 60

The viewer runs as a real ``endogs view RUN --port P`` process on 127.0.0.1. Each client connects with
viser's subprotocol, then loops over random actions: move the camera (a ``ViewerCameraMessage``; the
latency is the time until the next ``BackgroundImageMessage`` arrives), scrub the time slider and switch
the render mode (``GuiUpdateMessage`` to the handles' uuids read from the server's GUI messages), send a
malformed message (random bytes, msgpack of an unknown type, a camera with wrong fields) after which the
server may drop that connection, or disconnect abruptly (the TCP socket closed without a close frame);
a client whose connection ends reconnects. The viewer's RSS is sampled every second. Prints one JSON
object: render latency p50/p95 (ms), images received, actions, reconnects, RSS start/peak/end (MiB),
whether the process stayed alive, and whether a fresh client still gets an image at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import msgspec
import numpy as np
import zstandard
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODES = ("RGB", "Depth", "Alpha", "Deformation", "Canonical")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_window(raw: bytes) -> list[dict]:
    """The messages of one server window (viser's framing: sizes, zstd msgpack, binary buffers)."""
    n_comp = int.from_bytes(raw[8:16], "little")
    inner = zstandard.ZstdDecompressor().decompress(raw[16 : 16 + n_comp], max_output_size=int.from_bytes(raw[:8], "little"))
    return list(msgspec.msgpack.decode(inner)["messages"])


def camera_message(rng: random.Random, base: np.ndarray, size: tuple[int, int] = (320, 240)) -> dict:
    """A ViewerCameraMessage near ``base`` (camera position), looking along +z, as the browser sends it."""
    yaw = rng.uniform(-0.3, 0.3)
    pos = base + np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)])
    wxyz = (math.cos(yaw / 2), 0.0, math.sin(yaw / 2), 0.0)
    return {"type": "ViewerCameraMessage", "wxyz": wxyz, "position": tuple(float(v) for v in pos),
            "fov": math.radians(rng.uniform(40, 80)), "near": 0.01, "far": 1000.0,
            "image_height": size[1], "image_width": size[0],
            "look_at": tuple(float(v) for v in pos + np.array([0, 0, 1.0])), "up_direction": (0.0, -1.0, 0.0)}


MALFORMED = (
    lambda rng: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
    lambda rng: msgspec.msgpack.encode({"type": "NoSuchMessage", "x": 1}),
    lambda rng: msgspec.msgpack.encode({"type": "ViewerCameraMessage", "wxyz": "nope"}),
    lambda rng: msgspec.msgpack.encode({"type": "GuiUpdateMessage", "uuid": "missing", "updates": {"value": 1}}),
    lambda rng: msgspec.msgpack.encode([1, 2, 3]),
)


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    images: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    connect_failures: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.actions[what] = self.actions.get(what, 0) + 1


class Client:
    """One browser tab: a websocket connection plus the GUI uuids it has seen."""

    def __init__(self, url: str, version: str):
        self.ws = connect(url.replace("http://", "ws://"), subprotocols=[f"viser-v{version}"], max_size=None,
                          open_timeout=30, close_timeout=2)
        self.uuids: dict[str, str] = {}
        self.images = 0

    def pump(self, timeout: float) -> int:
        """Read windows for up to ``timeout`` s; returns the number of background images received."""
        got = 0
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return got
            try:
                raw = self.ws.recv(timeout=left)
            except TimeoutError:
                return got
            for m in decode_window(raw):
                t = m.get("type", "")
                if t == "BackgroundImageMessage":
                    got += 1
                elif "uuid" in m and isinstance(m.get("props"), dict) and "label" in m["props"]:
                    self.uuids.setdefault(m["props"]["label"], m["uuid"])

    def wait_image(self, timeout: float) -> Optional[float]:
        """Seconds until the next background image, None on timeout."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.pump(min(0.2, timeout)):
                return time.perf_counter() - t0
        return None

    def send(self, msg: dict) -> None:
        self.ws.send(msgspec.msgpack.encode(msg))

    def abort(self) -> None:
        """Drop the TCP connection without a websocket close frame (a crashed or closed tab)."""
        self.ws.socket.shutdown(socket.SHUT_RDWR)
        self.ws.socket.close()


def client_loop(url: str, version: str, seed: int, stop: threading.Event, stats: Stats) -> None:
    rng = random.Random(seed)
    base = np.zeros(3)
    c: Optional[Client] = None
    while not stop.is_set():
        try:
            if c is None:
                c = Client(url, version)
                c.pump(0.5)
            r = rng.random()
            if r < 0.45:
                c.send(camera_message(rng, base))
                lat = c.wait_image(20.0)
                stats.count("camera")
                if lat is not None:
                    with stats.lock:
                        stats.latencies_ms.append(1000 * lat)
                        stats.images += 1
            elif r < 0.65 and "Time" in c.uuids:
                c.send({"type": "GuiUpdateMessage", "uuid": c.uuids["Time"], "updates": {"value": round(rng.random(), 3)}})
                stats.count("scrub")
                c.pump(0.1)
            elif r < 0.8 and "Mode" in c.uuids:
                c.send({"type": "GuiUpdateMessage", "uuid": c.uuids["Mode"], "updates": {"value": rng.choice(MODES)}})
                stats.count("mode")
                c.pump(0.1)
            elif r < 0.9:
                c.ws.send(MALFORMED[rng.randrange(len(MALFORMED))](rng))
                stats.count("malformed")
                c.pump(0.2)
            else:
                c.abort()
                stats.count("abort")
                c = None
                with stats.lock:
                    stats.reconnects += 1
        except (ConnectionClosed, OSError, TimeoutError) as exc:
            with stats.lock:
                stats.reconnects += 1
                if not isinstance(exc, ConnectionClosed):
                    stats.connect_failures += 1
                    stats.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            c = None
            time.sleep(0.2)
    if c is not None:
        try:
            c.ws.close()
        except Exception:
            pass


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_viewer(run: Path, port: int, host: str = "127.0.0.1", timeout: float = 120.0):
    """``endogs view RUN`` in a subprocess; returns (process, url, stderr lines so far)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "endogs", "view", str(run), "--host", host, "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines: list[str] = []
    err: list[str] = []
    found = threading.Event()

    def read_out():
        for line in proc.stdout:
            lines.append(line)
            if "http://" in line:
                found.set()

    def read_err():
        for line in proc.stderr:
            err.append(line)

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=read_err, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        raise RuntimeError(f"endogs view printed no URL in {timeout} s: {''.join(lines)} {''.join(err)}")
    url = re.search(r"http://\S+", "".join(lines)).group(0)
    if host != "127.0.0.1":
        url = f"http://127.0.0.1:{port}"
    return proc, url, err


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def load_test(run: Path, clients: int = 16, seconds: float = 30.0, seed: int = 0, host: str = "127.0.0.1") -> dict:
    import viser

    port = free_port()
    proc, url, err = start_viewer(run, port, host)
    try:
        time.sleep(0.5)
        rss = [rss_mib(proc.pid)]
        stats, stop = Stats(), threading.Event()
        threads = [threading.Thread(target=client_loop, args=(url, viser.__version__, seed * 1000 + i, stop, stats), daemon=True)
                   for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        while time.perf_counter() - t0 < seconds and proc.poll() is None:
            time.sleep(1.0)
            rss.append(rss_mib(proc.pid))
        stop.set()
        for t in threads:
            t.join(30)
        alive = proc.poll() is None
        # a fresh tab after the storm still gets a picture
        final_latency = None
        if alive:
            c = Client(url, viser.__version__)
            c.pump(0.5)
            c.send(camera_message(random.Random(seed), np.zeros(3)))
            final_latency = c.wait_image(30.0)
            c.ws.close()
            rss.append(rss_mib(proc.pid))
        alive = alive and proc.poll() is None
        return {
            "clients": clients, "seconds": round(time.perf_counter() - t0, 1), "alive": alive,
            "exit_code": proc.poll(),
            "render_ms_p50": round(percentile(stats.latencies_ms, 50), 1),
            "render_ms_p95": round(percentile(stats.latencies_ms, 95), 1),
            "images": stats.images, "actions": stats.actions, "reconnects": stats.reconnects,
            "connect_failures": stats.connect_failures, "client_errors": stats.errors[:5],
            "rss_mib_start": round(rss[0], 1), "rss_mib_peak": round(max(rss), 1), "rss_mib_end": round(rss[-1], 1),
            "rss_mib_quarters": [round(rss[min(len(rss) - 1, q * (len(rss) - 1) // 4)], 1) for q in range(5)],
            "final_image_s": None if final_latency is None else round(final_latency, 2),
            "stderr_tail": [ln.rstrip() for ln in err[-5:]],
            "stderr_lines": len(err), "tracebacks": sum("Traceback" in ln for ln in err),
        }
    finally:
        proc.kill()
        proc.wait(10)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="a run folder (or --demo)")
    ap.add_argument("--demo", type=Path, help="train a tiny run into DIR once and use it")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    run = args.run
    if run is None:
        if args.demo is None:
            ap.error("give RUN or --demo DIR")
        sys.path.insert(0, str(ROOT / "tests"))
        from test_viewer import make_tiny_run

        run = make_tiny_run(args.demo)
    print(json.dumps(load_test(run, args.clients, args.seconds, args.seed), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
