"""Run every benchmark module in bench/ and write BENCHMARKS.md.

A benchmark module is `bench/bench_<name>.py` exposing `run(quick: bool) -> dict` (or
`run(quick, services)` when it needs the real Kafka + Redis, which the runner starts once).
Each runs in its own subprocess (isolated memory, a timeout, a crash is reported and the
rest go on). The preferred result form is a list of figures, each measured beside its
peer/baseline in the same run::

    {"figures": [{"name": "...", "value": 1234, "unit": "events/s",
                  "baseline_name": "bare aiokafka loop", "baseline": 2000, "ratio": 0.617}]}

Results in another shape are turned into figures by an adapter below when one exists,
else listed as raw numbers. The raw JSON of every module is kept in BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent

Figure = dict[str, Any]


# --- peak RSS ----------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM, MB) of a live process, 0.0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc; a worker may fork helpers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def peak_rss_tree_mb(pid: int) -> float:
    """Sum of the peak RSS of a process and its descendants (MB)."""
    return sum(peak_rss_mb(p) for p in tree_pids(pid))


# --- machine and versions ----------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, load average."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 1024 / 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _dist(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Python, torch, Kafka broker, redis-server and the client libraries."""
    from deploy.stack import KAFKA_VERSION

    redis_server = "not installed"
    binary = shutil.which("redis-server")
    if binary:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"v=(\S+)", out)
        redis_server = m.group(1) if m else out.strip()
    return {
        "python": platform.python_version(),
        "torch": _dist("torch"),
        "kafka (broker)": KAFKA_VERSION,
        "redis-server": redis_server,
        "faust-streaming": _dist("faust-streaming"),
        "aiokafka": _dist("aiokafka"),
        "kafka-python": _dist("kafka-python"),
        "redis-py": _dist("redis"),
        "numpy": _dist("numpy"),
    }


# --- discovery and running ---------------------------------------------------------------------
def discover(only: Sequence[str] = ()) -> list[str]:
    """Module names `bench.bench_*` present in bench/ (optionally only those named)."""
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in only}
        missing = wanted - set(names)
        if missing:
            raise SystemExit(f"no such benchmark: {', '.join(sorted(missing))}")
        names = [n for n in names if n in wanted]
    return names


@dataclass
class Services:
    """Addresses of the broker and Redis the benchmarks share."""

    kafka_bootstrap: str
    redis_url: str


@contextlib.contextmanager
def stack_services(kafka: str | None = None, redis_url: str | None = None) -> Iterator[Services]:
    """The given addresses, or a private local stack (deploy.stack) for the whole run."""
    if kafka and redis_url:
        yield Services(kafka, redis_url)
        return
    from deploy import stack

    jars = stack.ensure_kafka_jars(stack.default_state_dir())
    state_dir = Path(tempfile.mkdtemp(prefix="slatestream-bench-"))
    (state_dir / jars.name).symlink_to(jars)
    state = stack.up(state_dir)
    try:
        yield Services(state.kafka_bootstrap, state.redis_url)
    finally:
        stack.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


_CHILD = """
import inspect, json, sys, time
sys.path.insert(0, {root!r})
import importlib
mod = importlib.import_module("bench.{name}")
params = inspect.signature(mod.run).parameters
kwargs = {{}}
if "services" in params:
    from bench.runner import Services
    kwargs["services"] = Services(**json.loads({services!r}))
t0 = time.time()
res = mod.run({quick!r}, **kwargs)
res = dict(res)
res["_seconds"] = round(time.time() - t0, 1)
with open({out!r}, "w") as f:
    json.dump(res, f, default=str)
"""


@dataclass
class Outcome:
    """One module's run: its result, or the error."""

    name: str
    seconds: float
    result: dict[str, Any] | None = None
    error: str | None = None
    figures: list[Figure] = field(default_factory=list)


def run_module(
    name: str, quick: bool, services: Services | None, timeout_s: float = 900
) -> Outcome:
    """Run `bench.<name>.run(quick[, services])` in a subprocess; never raises."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        code = _CHILD.format(
            root=str(ROOT),
            name=name,
            services=json.dumps(services.__dict__ if services else {}),
            quick=quick,
            out=str(out),
        )
        t0 = time.time()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return Outcome(name, time.time() - t0, error=f"timed out after {timeout_s:.0f}s")
        dt = time.time() - t0
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
            return Outcome(name, dt, error=f"exit {proc.returncode}: " + " | ".join(tail))
        result = json.loads(out.read_text())
    outcome = Outcome(name, dt, result=result)
    outcome.figures = figures_of(name, result)
    return outcome


# --- figures -----------------------------------------------------------------------------------
def _fig(
    name: str,
    value: float | None,
    unit: str,
    baseline_name: str,
    baseline: float | None,
    higher_is_better: bool = True,
) -> Figure:
    ratio = None
    if value is not None and baseline:
        ratio = round(value / baseline, 3)
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline": baseline,
        "ratio": ratio,
        "higher_is_better": higher_is_better,
    }


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _adapt_ingest(r: dict[str, Any]) -> list[Figure]:
    bare_name = "bare aiokafka consume loop"
    out = [
        _fig(
            "ingest: feature worker (Faust), Kafka → Redis",
            r.get("worker_events_per_s"),
            "events/s",
            bare_name,
            r.get("bare_aiokafka_events_per_s"),
        )
    ]
    if r.get("bare_per_message_events_per_s"):
        out.append(
            _fig(
                "ingest: feature worker, beside aiokafka's per-message loop (async for msg)",
                r.get("worker_events_per_s"),
                "events/s",
                "bare aiokafka per-message loop",
                r["bare_per_message_events_per_s"],
            )
        )
    if r.get("handler_loop_events_per_s"):
        out.append(
            _fig(
                "ingest: same feature handler over a plain aiokafka loop",
                r["handler_loop_events_per_s"],
                "events/s",
                bare_name,
                r.get("bare_aiokafka_events_per_s"),
            )
        )
    if r.get("worker_cpu_us_per_event"):
        out.append(
            _fig(
                "ingest: feature worker CPU per event (load-independent)",
                r["worker_cpu_us_per_event"],
                "µs",
                "bare aiokafka loop CPU per event",
                r.get("bare_cpu_us_per_event"),
                higher_is_better=False,
            )
        )
    if r.get("redis_cpu_us_per_event"):
        out.append(
            _fig(
                "ingest: redis-server CPU per event",
                r["redis_cpu_us_per_event"],
                "µs",
                "feature worker CPU per event",
                r.get("worker_cpu_us_per_event"),
                higher_is_better=False,
            )
        )
    if r.get("least_cpu_us_per_event"):
        out.append(
            _fig(
                "ingest: least CPU per event of any worker (Redis floor + bare loop + JSON decode)",
                r["least_cpu_us_per_event"],
                "µs",
                "all-core CPU per event the 0.5 ratio target leaves",
                r.get("cpu_budget_at_target_ratio_us_per_event"),
                higher_is_better=False,
            )
        )
    # the worker's peak RSS is in the raw results; bench_rss reports it beside a bare worker
    return out


def _adapt_bandits(r: dict[str, Any]) -> list[Figure]:
    sel = r.get("select_ms") or {}
    out = []
    labels = (
        "in-slate-ts, 0% warm (all new items)",
        "in-slate-ts, 10% warm",
        "ts, 10% warm",
        "in-slate-ts, 100% warm",
        "in-slate-ts, 10% warm, temperature=0.125",
        "in-slate-ts, 100% warm, temperature=0.125",
    )
    for clock in ("wall", "cpu"):
        greedy = _get(sel, "greedy, 10% warm", clock, "p99")
        for label in labels:
            p99 = _get(sel, label, clock, "p99")
            if p99 is not None:
                out.append(
                    _fig(
                        f"slate select p99 ({clock} time), 10k candidates, k=10, {label}",
                        round(p99, 3),
                        "ms",
                        "greedy policy, 10% warm (same candidates)",
                        round(greedy, 3) if greedy else None,
                        higher_is_better=False,
                    )
                )
    floor = r.get("noise_floor_ms") or {}
    if floor:
        out.append(
            _fig(
                "fixed ~1 ms numpy work timed as a select, p99 (cpu time): the machine's noise",
                round(_get(floor, "cpu", "p99"), 3),
                "ms",
                "the same work, median",
                round(_get(floor, "cpu", "p50"), 3),
                higher_is_better=False,
            )
        )
    updates = dict(r.get("update_us") or {})
    peer_label = next((k for k in updates if k.startswith("peer:")), None)
    peer = updates.pop(peer_label) if peer_label else None
    for label, stats in updates.items():
        mean = _get(stats, "wall", "mean")
        out.append(
            _fig(
                f"posterior update mean, {label}",
                round(mean, 1) if mean is not None else None,
                "µs",
                peer_label[6:] if peer_label else "no peer measured",
                round(_get(peer, "wall", "mean"), 1) if peer else None,
                higher_is_better=False,
            )
        )
    return out


def _adapt_training(r: dict[str, Any]) -> list[Figure]:
    out = []
    peer = "bare torch GRU + sampled softmax, same shapes and cadence"
    for key, label in (("default", "worker default, 256 events/step"), ("step128", "128/step")):
        value = _get(r, f"training_{key}", "events_per_s")
        if value:
            base = _get(r, f"bare_torch_{key}", "events_per_s")
            out.append(_fig(f"training events/s ({label})", value, "events/s", peer, base))
    for kind in ("gru", "bayes-gru"):
        for what, label, bare in (
            ("score_all_items", "score all 10k items", "bare_numpy_score"),
            ("rank_top10", "top-10", "bare_numpy_top10"),
        ):
            p99 = _get(r, "scoring", kind, what, "p99_ms")
            if p99 is not None:
                base = _get(r, "scoring", kind, bare, "p99_ms")
                out.append(
                    _fig(
                        f"{kind}: {label} p99",
                        p99,
                        "ms",
                        "bare numpy matmul (+argpartition), 10k x 64 float32",
                        base,
                        False,
                    )
                )
    return out


ADAPTERS: dict[str, Callable[[dict[str, Any]], list[Figure]]] = {
    "bench_ingest": _adapt_ingest,
    "bench_bandits": _adapt_bandits,
    "bench_training": _adapt_training,
}


def _numbers(d: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(d, dict):
        for k, v in d.items():
            if not str(k).startswith("_"):
                yield from _numbers(v, f"{prefix}{k}." if prefix or k else "")
    elif isinstance(d, int | float) and not isinstance(d, bool):
        yield prefix.rstrip("."), float(d)


def figures_of(name: str, result: dict[str, Any]) -> list[Figure]:
    """The module's figures: its own `figures`, an adapter's, else its raw numbers."""
    if isinstance(result.get("figures"), list):
        return [dict(f) for f in result["figures"] if isinstance(f, dict) and "name" in f]
    adapter = ADAPTERS.get(name)
    if adapter is not None:
        try:
            figs = [f for f in adapter(result) if f.get("value") is not None]
        except (KeyError, TypeError, ValueError):
            figs = []
        if figs:
            return figs
    return [
        _fig(path, value, "", "(no baseline reported)", None)
        for path, value in _numbers(result)
        if path not in ("quick",)
    ][:40]


# --- report ------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render_markdown(
    outcomes: Sequence[Outcome],
    machine: dict[str, Any],
    vers: dict[str, str],
    command: str,
    started: float,
    machine_after: dict[str, Any] | None = None,
) -> str:
    """BENCHMARKS.md: machine, versions, command, one table of figures, raw results."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {when} (total {sum(o.seconds for o in outcomes):.0f} s).",
        "Each figure is measured beside its peer or baseline **in the same run** where the",
        "benchmark module reports one (a target is labelled as such; a missing peer says so);",
        "ratio = figure / baseline (for latencies and memory lower is better, so a ratio",
        "below 1 is the good direction there). The machine is shared: see the load average.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores",
        f"- RAM: {machine['ram_gb']} GB",
        f"- OS: {machine['os']}",
        f"- load average (1 min) at start: {machine['loadavg_1m']}"
        + (f", at end: {machine_after['loadavg_1m']}" if machine_after else ""),
        "",
        "## Versions",
        "",
        "| component | version |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in vers.items()],
        "",
        "## Results",
        "",
        "| benchmark | figure | value | unit | baseline / peer | baseline | ratio |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for o in outcomes:
        short = o.name.removeprefix("bench_")
        if o.error:
            lines.append(f"| {short} | **failed**: {o.error[:300]} | | | | | |")
            continue
        for f in o.figures:
            lines.append(
                f"| {short} | {f['name']} | {_fmt(f.get('value'))} | {f.get('unit', '')} "
                f"| {f.get('baseline_name') or '–'} | {_fmt(f.get('baseline'))} "
                f"| {_fmt(f.get('ratio'))} |"
            )
    lines += ["", "## Raw results", ""]
    for o in outcomes:
        lines += [
            f"<details><summary>{o.name} ({o.seconds:.0f} s)</summary>",
            "",
            "```json",
            json.dumps(o.result if o.result is not None else {"error": o.error}, indent=1),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench`: run the benchmarks, print a summary, write BENCHMARKS.md."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("names", nargs="*", help="only these benchmarks (e.g. store_ops ingest)")
    p.add_argument("--full", action="store_true", help="longer runs (default: quick, minutes)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--kafka", default=None, help="existing broker (else a private stack)")
    p.add_argument("--redis", default=None, help="existing Redis URL (with --kafka)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per benchmark")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    names = discover(args.names)
    if args.list:
        print("\n".join(names))
        return 0
    started = time.time()
    machine = machine_info()
    vers = versions()
    needs = [n for n in names if "services" in _run_params(n)]
    outcomes: list[Outcome] = []
    with contextlib.ExitStack() as stack:
        services = None
        if needs:
            services = stack.enter_context(stack_services(args.kafka, args.redis))
        for name in names:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            o = run_module(name, not args.full, services, args.timeout)
            status = o.error or ", ".join(
                f"{f['name']}: {_fmt(f.get('value'))} {f.get('unit', '')}"
                + (f" (x{_fmt(f['ratio'])})" if f.get("ratio") is not None else "")
                for f in o.figures[:4]
            )
            print(f"[bench] {name} {o.seconds:.0f}s: {status}", file=sys.stderr, flush=True)
            outcomes.append(o)
    command = "python -m bench" + (" " + " ".join(argv) if argv else "")
    if argv is None:
        command = "python -m bench" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    md = render_markdown(outcomes, machine, vers, command, started, machine_info())
    args.out.write_text(md + "\n")
    print(f"[bench] wrote {args.out}", file=sys.stderr)
    return 1 if any(o.error for o in outcomes) else 0


def _run_params(name: str) -> list[str]:
    """Parameter names of bench.<name>.run, read from the source (no heavy imports)."""
    src = (BENCH_DIR / f"{name}.py").read_text()
    m = re.search(r"^def run\(([^)]*)\)", src, re.MULTILINE)
    if not m:
        return []
    return [p.split(":")[0].split("=")[0].strip() for p in m.group(1).split(",") if p.strip()]


__all__ = [
    "Outcome",
    "Services",
    "discover",
    "figures_of",
    "machine_info",
    "peak_rss_mb",
    "peak_rss_tree_mb",
    "run_module",
    "versions",
]
