"""``endogs batch``: run every (input, config) pair of a SPEC as a Ray task, retry failures, tabulate.

The driver (this module) validates the SPEC and plans the pairs (:mod:`endogs.batch.spec`) before it
starts or joins Ray, skips the pairs an earlier run finished (their ``done.json`` matches), submits one
task per remaining pair (:func:`endogs.batch.task.run_pair`) and follows them:

- resources: each task reserves ``cpus_per_task`` CPUs, and one GPU when the cluster has GPUs (unless
  its config says ``device: cpu``);
- Ray's own retries are off (``max_retries=0``); the driver resubmits a pair whose worker died or whose
  task raised, at most ``max_retries`` more times, and the new attempt resumes from the run's last
  checkpoint. A user error (:class:`endogs.errors.EndogsError`: a corrupt input, ...) is final at once.
  A pair that keeps failing is reported with its input, config and error; the others go on;
- pairs of one video input wait until one of them has prepared the scene (no two tasks prepare the same
  video);
- progress: one line per state change (queued, running, retry, done, failed, skipped) on stderr, and a
  tqdm bar over all pairs when stderr is a terminal, else a line every ~10 % of the pairs with the ETA;
- one batch per output folder at a time: the driver holds ``OUTPUT/.endogs-batch`` while it runs, and
  every task checks that it sees that file (the output folder must be storage shared by all nodes);
- at the end the comparison table of ``endogs benchmark`` (:func:`endogs.eval.benchmark.write_table`:
  OUTPUT/table.md and table.csv) over all pairs, failed ones included as "failed" rows, and
  OUTPUT/batch.json with every pair's state.

Without an address the driver starts a private local Ray instance on this machine's cores, without
dashboard, with its node address and every Ray server on 127.0.0.1 only, and a small object store (tasks
exchange only paths and metrics; the data stays in the shared output folder): Ray reserves 30 % of the
memory in /dev/shm by default, which containers often cap at 64 MB. It shuts the instance down at the
end. With ``--address`` it joins an existing cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) and
only disconnects at the end.

Test-only: the environment variable ``ENDOGS_BATCH_TEST_KILL`` (comma-separated pair names
``input__config``) makes the first attempt of those pairs kill its own worker process with SIGKILL just
after its first checkpoint (:func:`endogs.batch.task.kill_after_first_checkpoint`), to test that a dead
worker is retried and resumes from its checkpoint. Leave it unset in normal use.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from endogs.batch.spec import BatchPlan, Pair, plan_batch
from endogs.batch.task import STAMP_FILE, PairJob, run_pair
from endogs.config_io import to_dict
from endogs.errors import ConfigError
from endogs.run import RunFolder

TEST_KILL_ENV = "ENDOGS_BATCH_TEST_KILL"
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20
POLL_S = 0.5
FAILED = "failed"
# Ray turns 127.0.0.1 into the machine's routable address, and its servers then listen on every
# interface, unless its cluster mode is off; then the node address stays 127.0.0.1 and the GCS, the
# raylet and the workers listen on loopback only. Ray reads this variable when it is imported.
RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("endogs batch needs Ray, an optional extra: install endogs[cluster] "
                          "(pip install 'endogs[cluster]')") from None
    return ray


class _Events:
    """A Ray actor (num_cpus=0) that collects the tasks' progress events for the driver."""

    def __init__(self) -> None:
        self.items: list[tuple] = []

    def put(self, item: tuple) -> None:
        self.items.append(item)

    def drain(self) -> list[tuple]:
        items, self.items = self.items, []
        return items


@dataclass
class PairState:
    pair: Pair
    state: str = "queued"
    attempts: int = 0
    error: Optional[str] = None
    host: Optional[str] = None
    report: Optional[dict[str, Any]] = None
    done: Optional[dict[str, Any]] = None
    seconds: Optional[float] = None


@dataclass
class BatchResult:
    out_dir: Path
    states: list[PairState]
    rows: list[dict[str, Any]]
    table_text: str
    cluster: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[PairState]:
        return [s for s in self.states if s.state == FAILED]


class Progress:
    """State lines on stderr, and the pairs done (:class:`endogs.utils.progress.Progress`: a bar on a
    terminal, else a line every ~10 % with the ETA)."""

    def __init__(self, total: int, initial: int, quiet: bool):
        from endogs.utils.progress import Progress as Bar

        self.bar = Bar(total, "batch", enabled=not quiet, initial=initial, stream=sys.stderr, unit="pair")

    def line(self, text: str) -> None:
        self.bar.line(text)

    def state(self, st: PairState, detail: str = "") -> None:
        self.line(f"{st.state:<8} {st.pair.key}" + (f"  {detail}" if detail else ""))

    def advance(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ------------------------------------------------------------------------------------------ Ray
@contextmanager
def ray_session(ray, address: Optional[str], log: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Join the cluster at ``address`` or start a private local instance; yields what the cluster offers."""
    if address:
        client = address.startswith("ray://")
        if client and importlib.util.find_spec("grpc") is None:
            raise ConfigError(f"--address {address} goes through Ray Client, which needs Ray's client extra (pip install "
                              f"'ray[client]=={ray.__version__}'); or run endogs batch on the head node with --address auto")
        kwargs = {} if client else {"log_to_driver": False}
        try:
            ray.init(address=address, logging_level=logging.WARNING, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {address} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                              "start it with `ray start --head` or fix --address") from None
        where = f"the Ray cluster at {address}"
    else:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        _init_local(ray, cpus)
        where = "a local Ray instance (127.0.0.1)"
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        res = ray.cluster_resources()
        info = {"where": where, "nodes": len(nodes), "cpus": float(res.get("CPU", 0)), "gpus": float(res.get("GPU", 0)),
                "max_node_cpus": max((float(n["Resources"].get("CPU", 0)) for n in nodes), default=0.0)}
        log(f"batch: on {where}: {info['nodes']} node(s), {info['cpus']:g} CPUs, {info['gpus']:g} GPUs")
        yield info
    finally:
        ray.shutdown()


def _init_local(ray, cpus: int) -> None:
    import ray._private.ray_constants as ray_constants

    saved_env, saved_flag = os.environ.get(RAY_CLUSTER_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[RAY_CLUSTER_ENV] = "0"  # inherited by the GCS, the raylet and the workers
    ray_constants.ENABLE_RAY_CLUSTER = False  # read by this process (ray may have been imported before)
    try:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, log_to_driver=False, logging_level=logging.WARNING)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(RAY_CLUSTER_ENV, None)
        else:
            os.environ[RAY_CLUSTER_ENV] = saved_env
    addresses = {n.get("NodeManagerAddress") for n in ray.nodes()}
    if addresses != {"127.0.0.1"}:
        ray.shutdown()
        raise RuntimeError(f"the local Ray instance is not bound to 127.0.0.1 (node addresses {sorted(addresses)}); "
                           f"this Ray version ignores {RAY_CLUSTER_ENV}=0")


# ------------------------------------------------------------------------------------------ the driver
def _test_kill_keys(plan: BatchPlan) -> set[str]:
    raw = os.environ.get(TEST_KILL_ENV, "").strip()
    keys = {k.strip() for k in raw.split(",") if k.strip()}
    unknown = keys - {p.key for p in plan.pairs}
    if unknown:
        raise ConfigError(f"{TEST_KILL_ENV} names pairs that are not in the batch: {', '.join(sorted(unknown))}")
    return keys


def make_job(plan: BatchPlan, pair: Pair, attempt: int, stamp: str, kill: bool) -> PairJob:
    inp = pair.input
    video = inp.kind == "video"
    return PairJob(
        key=pair.key, input_name=inp.name, config_name=pair.config_name, data=str(inp.data),
        video=str(inp.source) if video else None, prepare=inp.prepare if video else None,
        prepared_marker=str(inp.prepared_marker) if video else None,
        prepared_record=inp.prepared_record() if video else None,
        run_dir=str(pair.run_dir), out_dir=str(plan.out_dir), stamp=stamp, config=to_dict(pair.config),
        eval=asdict(plan.spec.eval), eval_record=json.loads(json.dumps(plan.eval_record(pair))),
        protocol=inp.protocol, attempt=attempt, cpus=plan.spec.cpus_per_task, kill_after_checkpoint=kill)


def _error_line(exc: BaseException) -> str:
    lines = [x for x in str(exc).strip().splitlines() if x.strip()]
    return f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__


def run_batch(spec: Union[str, Path], address: Optional[str] = None, out: Optional[Union[str, Path]] = None,
              quiet: bool = False) -> BatchResult:
    """Plan, run and tabulate a batch (module docstring). Raises ConfigError on a bad SPEC before any work."""
    plan = plan_batch(spec, out)
    kill_keys = _test_kill_keys(plan)
    states = [PairState(p) for p in plan.pairs]
    todo = [s for s in states if s.pair.finished is None]
    for s in states:
        if s.pair.finished is not None:
            s.state, s.done = "skipped", s.pair.finished
    ray = import_ray() if todo else None  # before any output: without Ray the error is the only line
    n_inputs, n_configs = len(plan.inputs), len(plan.config_names)
    progress = Progress(len(states), len(states) - len(todo), quiet)
    progress.line(f"batch {plan.name}: {len(states)} pairs ({n_inputs} inputs x {n_configs} configs), "
                  f"{len(states) - len(todo)} finished earlier -> {plan.out_dir}")
    for s in states:
        if s.state == "skipped":
            progress.state(s, f"finished earlier ({RunFolder(s.pair.run_dir).done_file})")
    cluster: dict[str, Any] = {}
    try:
        if todo:
            with output_lock(plan.out_dir) as stamp, ray_session(ray, address, progress.line) as cluster:
                _check_resources(plan, todo, cluster)
                _schedule(ray, plan, todo, stamp, kill_keys, cluster, progress)
    finally:
        progress.close()
    return _finish(plan, states, cluster)


@contextmanager
def output_lock(out_dir: Path) -> Iterator[str]:
    """Hold OUTPUT/.endogs-batch while the batch runs: one batch per output folder at a time, and the
    file every task checks to prove it sees the same (shared) folder. Yields the file's content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / STAMP_FILE
    text = json.dumps({"id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
                path.unlink(missing_ok=True)  # left by a batch on this machine that was killed
                continue
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "unknown"
            raise ConfigError(f"another endogs batch ({who}) is using this output folder; wait for it to end, or delete "
                              f"{path.name} there if it is no longer running", out_dir) from None
        with os.fdopen(fd, "w") as f:
            f.write(text)
        break
    try:
        yield text
    finally:
        try:
            if path.read_text() == text:
                path.unlink()
        except OSError:
            pass


def _lock_holder(path: Path) -> Optional[dict[str, Any]]:
    try:
        holder = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_resources(plan: BatchPlan, todo: list[PairState], cluster: dict[str, Any]) -> None:
    cpus = plan.spec.cpus_per_task
    if cpus > cluster["max_node_cpus"]:
        raise ConfigError(f"cpus_per_task {cpus:g} exceeds the {cluster['max_node_cpus']:g} CPUs of the largest node; "
                          "lower cpus_per_task in the SPEC", plan.spec_path)
    if cluster["gpus"] < 1:
        cuda = sorted({s.pair.config_name for s in todo if s.pair.config.device == "cuda"})
        if cuda:
            raise ConfigError(f"config(s) {', '.join(cuda)} ask for device cuda but the cluster has no GPU; use device "
                              "auto or cpu, or add GPU nodes", plan.spec_path)


def _schedule(ray, plan: BatchPlan, todo: list[PairState], stamp: str, kill_keys: set[str], cluster: dict[str, Any],
              progress: Progress) -> None:
    remote = ray.remote(run_pair)
    events = ray.remote(num_cpus=0)(_Events).remote()
    use_gpus = cluster["gpus"] >= 1
    in_flight: dict[Any, PairState] = {}
    by_key = {s.pair.key: s for s in todo}
    max_attempts = plan.spec.max_retries + 1
    # pairs of a video input wait for one of them (the leader) to prepare the scene
    held: dict[str, list[PairState]] = {}
    leaders: dict[str, PairState] = {}

    def submit(st: PairState) -> None:
        st.attempts += 1
        gpu = use_gpus and st.pair.config.device != "cpu"
        job = make_job(plan, st.pair, st.attempts, stamp, kill=st.pair.key in kill_keys and st.attempts == 1)
        ref = remote.options(num_cpus=plan.spec.cpus_per_task, num_gpus=1 if gpu else 0, max_retries=0,
                             name=f"endogs-batch:{st.pair.key}").remote(job, events)
        in_flight[ref] = st

    def release(name: str) -> None:
        leaders.pop(name, None)
        for st in held.pop(name, []):
            submit(st)

    def finished(st: PairState) -> None:
        progress.advance()
        name = st.pair.input.name
        if leaders.get(name) is st:
            if st.state == "done":
                release(name)
            elif held.get(name):  # the next pair of this input tries to prepare it
                leaders[name] = held[name].pop(0)
                submit(leaders[name])

    for st in todo:
        inp = st.pair.input
        progress.state(st)
        if inp.kind == "video" and not inp.scene_ready():
            if inp.name in leaders:
                held.setdefault(inp.name, []).append(st)
                continue
            leaders[inp.name] = st
        submit(st)

    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
        for ev in ray.get(events.drain.remote()):
            kind, key, attempt = ev[0], ev[1], ev[2]
            st = by_key.get(key)
            if st is None or st.attempts != attempt or st.state in ("done", FAILED):
                continue
            if kind == "running" and st.state != "running":
                _running(st, ev[3], max_attempts, progress)
            elif kind == "prepared" and leaders.get(ev[3]) is st:
                release(ev[3])
        for ref in ready:
            st = in_flight.pop(ref)
            try:
                res = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker or its node died, the task could not run, ...
                res = {"ok": False, "error": _error_line(exc), "retryable": True}
            _handle(st, res, max_attempts, submit, finished, progress)


def _running(st: PairState, host: Optional[str], max_attempts: int, progress: Progress) -> None:
    st.state, st.host = "running", host
    progress.state(st, f"attempt {st.attempts}/{max_attempts} on {host or 'an unknown node'}")


def _handle(st: PairState, res: dict[str, Any], max_attempts: int, submit, finished, progress: Progress) -> None:
    if st.state != "running":  # the attempt's "running" event has not come through yet: say it first
        _running(st, res.get("host"), max_attempts, progress)
    st.host = res.get("host", st.host)
    if res["ok"]:
        st.state, st.report, st.done, st.error = "done", res["report"], res["done"], None
        m = res["report"]["metrics"]["model"]
        psnr = m.get("psnr")
        progress.state(st, (f"PSNR {psnr:.2f} dB (masked); " if psnr is not None else "")
                       + f"training {res['done']['train']}, evaluation {res['done']['evaluation']}; {res['done']['seconds']:.1f} s")
        finished(st)
        return
    st.error = res["error"]
    if res.get("retryable") and st.attempts < max_attempts:
        st.state = "retry"
        resume = RunFolder(st.pair.run_dir).has_checkpoint()
        progress.state(st, f"attempt {st.attempts}/{max_attempts} failed: {st.error}; "
                       + ("resuming from its last checkpoint" if resume else "starting again"))
        submit(st)
        return
    st.state = FAILED
    progress.state(st, f"input {st.pair.input.source}, config {st.pair.config_name}, after {st.attempts} attempt(s): "
                       f"{st.error} (log: {RunFolder(st.pair.run_dir).task_log})")
    finished(st)


# ------------------------------------------------------------------------------------------ the table
def _finish(plan: BatchPlan, states: list[PairState], cluster: dict[str, Any]) -> BatchResult:
    from endogs.eval import io
    from endogs.eval.benchmark import MEASURED, TABLE_COLUMNS, measured_rows, peer_rows, write_table

    single = plan.config_names == ["default"]
    rows: list[dict[str, Any]] = []
    with_baselines: set[str] = set()
    verdicts, failures, pairs = [], [], []
    for st in states:
        p = st.pair
        method = "endogs" if single else f"endogs ({p.config_name})"
        if st.state in ("done", "skipped"):
            report = st.report or json.loads(Path(st.done["metrics_file"]).read_text())
            st.report = report
            rows += measured_rows(p.input.name, method, report, baselines=p.input.name not in with_baselines)
            with_baselines.add(p.input.name)
            verdicts.append(f"{p.input.name} / {p.config_name}: {report['verdict']['text']}")
        elif st.state == FAILED:
            rows.append({**{c: None for c in TABLE_COLUMNS}, "scene": p.input.name, "method": method, "source": FAILED,
                         "note": st.error})
            failures.append(f"{p.input.name} / {p.config_name} (input `{p.input.source}`): {st.error} "
                            f"after {st.attempts} attempt(s); log `{RunFolder(p.run_dir).task_log}`")
        pairs.append(f"{p.input.name} / {p.config_name}: `{p.run_dir}` ({st.state}"
                     + (f", attempts {st.attempts}" if st.attempts else "") + (f", on {st.host}" if st.host else "") + ")")
    # baselines after the measured rows of each input, as in endogs benchmark
    order = {inp.name: k for k, inp in enumerate(plan.inputs)}
    rows.sort(key=lambda r: (order[r["scene"]], r["source"] not in (MEASURED, FAILED)))
    reported, notes = peer_rows(plan.peers)
    rows += reported
    sections = []
    if failures:
        sections.append(("Failed pairs", failures))
    sections.append(("Verdicts", verdicts))
    if notes:
        sections.append(("Reported numbers: sources and protocols", notes))
    sections.append(("Pairs", pairs))
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    text = write_table(plan.out_dir, f"Batch: {plan.name}", "this batch", rows, plan.spec.eval, sections)
    io.write_json(plan.out_dir / "batch.json", {
        "name": plan.name, "spec": str(plan.spec_path.resolve()), "output": str(plan.out_dir), "cluster": cluster,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pairs": [{"pair": s.pair.key, "input": s.pair.input.name, "source": str(s.pair.input.source),
                   "config": s.pair.config_name, "run": str(s.pair.run_dir), "state": s.state, "attempts": s.attempts,
                   "error": s.error, "host": s.host,
                   "metrics_file": s.done.get("metrics_file") if s.done else None} for s in states],
        "rows": rows})
    return BatchResult(plan.out_dir, states, rows, text, cluster)
