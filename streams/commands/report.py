"""`slatestream report --prometheus URL`: the key dashboard panels rendered to PNG.

For people who prefer to look rather than read, and for places without Grafana. Two sources:

- a Prometheus server: `fetch_series(url, range_s)` runs the panels' PromQL over a range;
- this process: `RegistrySampler` samples the in-process metrics (the embedded demo) every
  second and derives the same figures (rates, histogram quantiles over a sliding window).

Both give `series: dict[str, list[tuple[float, float]]]` keyed `"<panel> / <line>"` with
(seconds, value) points; `render_panels(series, out_dir)` draws one PNG per panel and a
grid of all of them (`panels.png`), and returns the paths.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry

from streams.errors import SlatestreamError
from streams.outputs import check_writable_dir

Series = dict[str, list[tuple[float, float]]]
ROLES = ("features", "joiner", "trainer", "scorer")
SEP = " / "


@dataclass(frozen=True)
class Panel:
    """One chart: a title, a unit for the y axis, PromQL queries with legend templates."""

    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]


def _q(p: float, metric: str, window: str = "1m", by: str = "le") -> str:
    return f"histogram_quantile({p}, sum by ({by}) (rate({metric}_bucket[{window}])))"


PANELS: tuple[Panel, ...] = (
    Panel(
        "Events in",
        "records/s",
        tuple((f"sum(rate(slatestream_{r}_events_in_total[1m]))", r) for r in ROLES),
    ),
    Panel(
        "Batch latency p99",
        "s",
        tuple((_q(0.99, f"slatestream_{r}_batch_seconds"), r) for r in ROLES),
    ),
    Panel(
        "Scorer request latency",
        "s",
        (
            (_q(0.5, "slatestream_scorer_request_seconds"), "p50"),
            (_q(0.99, "slatestream_scorer_request_seconds"), "p99"),
        ),
    ),
    Panel(
        "Consumer lag",
        "records",
        tuple((f"sum(slatestream_{r}_consumer_lag)", r) for r in ROLES),
    ),
    Panel(
        "Freshness p99",
        "s",
        (
            (_q(0.99, "slatestream_features_freshness_seconds"), "event → features"),
            (_q(0.99, "slatestream_trainer_freshness_seconds"), "feedback → model"),
            (_q(0.99, "slatestream_scorer_snapshot_load_seconds", "5m"), "snapshot → scorer"),
        ),
    ),
    Panel(
        "CTR by policy",
        "clicks per slate",
        (
            (
                "sum by (policy) (rate(slatestream_scorer_clicks_total[5m]))"
                " / sum by (policy) (rate(slatestream_scorer_feedback_total[5m]))",
                "{{policy}}",
            ),
        ),
    ),
    Panel(
        "Exploration share",
        "share of slate positions",
        (
            (
                "sum by (policy) (rate(slatestream_scorer_explored_items_total[5m]))"
                " / sum by (policy) (rate(slatestream_scorer_slate_items_total[5m]))",
                "{{policy}}",
            ),
        ),
    ),
    Panel("Training loss", "loss", (("slatestream_trainer_loss", "last step"),)),
    Panel(
        "Model version",
        "version",
        (
            ("slatestream_trainer_model_version", "trainer wrote"),
            ("slatestream_scorer_model_version", "scorer serves"),
        ),
    ),
    Panel(
        "Dead letters",
        "records/s",
        (('sum by (reason) (rate({__name__=~"slatestream_.+_dlq_total"}[1m]))', "{{reason}}"),),
    ),
)


# --- Prometheus --------------------------------------------------------------------------------
def _get(url: str, timeout: float = 10.0) -> dict[str, object]:
    base = url.split("/api/")[0]
    try:
        body = json.loads(urllib.request.urlopen(url, timeout=timeout).read())
    except urllib.error.HTTPError as exc:  # Prometheus answers bad queries with 400 + JSON
        try:
            body = json.loads(exc.read())
        except ValueError:
            raise SlatestreamError(f"--prometheus: HTTP {exc.code} from {url}") from None
    except json.JSONDecodeError:  # something answers HTTP, e.g. a web page
        raise SlatestreamError(f"--prometheus: {base} answers, but not as Prometheus") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SlatestreamError(f"--prometheus: no answer from {base} ({exc})") from None
    if not isinstance(body, dict):
        raise SlatestreamError(f"--prometheus: {base} answers, but not as Prometheus")
    if body.get("status") != "success":
        raise SlatestreamError(f"--prometheus: query failed: {body.get('error', body)}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise SlatestreamError(f"--prometheus: {base} answers, but not as Prometheus")
    return data


def _legend(template: str, labels: Mapping[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), "?"), template)


def query_range(
    base: str, expr: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """Prometheus range query: (labels, [(unix time, value)]) per series; NaN/Inf dropped."""
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    data = _get(f"{base.rstrip('/')}/api/v1/query_range?{params}")
    root = base.split("/api/")[0]
    kind = data.get("resultType", "matrix")
    if kind != "matrix":
        raise SlatestreamError(
            f"--prometheus: {root} answered a range query with a {kind!r} result, not a time "
            "series (matrix); is it Prometheus?"
        )
    try:
        return _matrix(data.get("result", []))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        why = f"a series has no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise SlatestreamError(
            f"--prometheus: {root} answers, but not as Prometheus (bad time series: {why})"
        ) from None


def _matrix(result: object) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """Parse a matrix result ([{"metric": {...}, "values": [[t, "v"], ...]}, ...]); raises
    KeyError/TypeError/ValueError on any other shape, which the caller turns into one line."""
    if not isinstance(result, list):
        raise TypeError(f"result is {type(result).__name__}, not a list")
    out = []
    for s in result:
        if not isinstance(s, dict) or not isinstance(s["metric"], dict):
            raise TypeError("a series is not an object with a 'metric' object")
        values = s["values"]
        if not isinstance(values, list):
            raise TypeError("'values' is not a list")
        pts = []
        for pair in values:
            if not isinstance(pair, list) or len(pair) != 2:
                raise TypeError(f"point {pair!r} is not a [time, value] pair")
            t, v = float(pair[0]), float(pair[1])
            if math.isfinite(v) and math.isfinite(t):
                pts.append((t, v))
        if pts:
            out.append(({str(k): str(x) for k, x in s["metric"].items()}, pts))
    return out


def parse_duration(text: str) -> float:
    """`15m`, `90s`, `2h`, `1h30m` -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not parts or "".join(a + b for a, b in parts) != text.strip():
        raise SlatestreamError(f"--range: bad duration {text!r} (e.g. 15m, 90s, 2h)")
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    seconds = sum(float(n) * mult[u] for n, u in parts)
    if seconds <= 0:
        raise SlatestreamError(f"--range: the duration must be > 0, not {text!r}")
    return seconds


def fetch_series(
    base: str, range_s: float, end: float | None = None, panels: Sequence[Panel] = PANELS
) -> Series:
    """Every panel's queries over the last `range_s` seconds; x = seconds since range start."""
    end = time.time() if end is None else end
    start = end - range_s
    step = max(1.0, range_s / 240)
    series: Series = {}
    for panel in panels:
        for expr, legend in panel.queries:
            for labels, pts in query_range(base, expr, start, end, step):
                series[f"{panel.title}{SEP}{_legend(legend, labels)}"] = [
                    (t - start, v) for t, v in pts
                ]
    return series


# --- in-process sampling (the embedded demo) ----------------------------------------------------
def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in registry.collect():
        if not fam.name.startswith("slatestream_"):
            continue
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c
    return prev_le


class RegistrySampler:
    """Samples the in-process metrics every `interval_s`; `series()` gives the panel figures.

    Rates and quantiles are computed over a sliding `window_s`, as `rate(...[window])` would.
    """

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        interval_s: float = 1.0,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self.window_s = window_s
        self.clock = clock
        self.snaps: list[tuple[float, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one snapshot of every slatestream sample now."""
        self.snaps.append((self.clock(), _samples(self.registry)))

    def start(self) -> RegistrySampler:
        """Sample in a daemon thread until `stop()`."""

        def run() -> None:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=run, name="metrics-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (takes a last sample)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def series(self) -> Series:
        """The report panels' figures over time, from the samples taken."""
        out: Series = defaultdict(list)
        if len(self.snaps) < 2:
            return {}
        t0 = self.snaps[0][0]
        for i in range(1, len(self.snaps)):
            now, cur = self.snaps[i]
            j = i - 1
            while j > 0 and now - self.snaps[j - 1][0] <= self.window_s:
                j -= 1
            then, old = self.snaps[j]
            dt = now - then
            if dt <= 0:
                continue
            x = now - t0
            for name, value in self._figures(cur, old, dt).items():
                if math.isfinite(value):
                    out[name].append((x, value))
        return dict(out)

    @staticmethod
    def _figures(
        cur: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
        old: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
        dt: float,
    ) -> dict[str, float]:
        def total(name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
            return sum(v for (n, lab), v in cur.items() if n == name and where(dict(lab)))

        def delta(name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
            before = sum(v for (n, lab), v in old.items() if n == name and where(dict(lab)))
            return total(name, where) - before

        def by(name: str, label: str) -> set[str]:
            return {dict(lab).get(label, "") for (n, lab) in cur if n == name}

        def quant(q: float, metric: str) -> float:
            les: dict[float, float] = defaultdict(float)
            for (n, lab), v in cur.items():
                if n == f"{metric}_bucket":
                    les[float(dict(lab)["le"])] += v - old.get((n, lab), 0.0)
            return _quantile(q, list(les.items()))

        f: dict[str, float] = {}
        for r in ROLES:
            f[f"Events in{SEP}{r}"] = delta(f"slatestream_{r}_events_in_total") / dt
            f[f"Batch latency p99{SEP}{r}"] = quant(0.99, f"slatestream_{r}_batch_seconds")
            lag = [v for (n, _), v in cur.items() if n == f"slatestream_{r}_consumer_lag"]
            if lag:
                f[f"Consumer lag{SEP}{r}"] = sum(lag)
            f[f"Dead letters{SEP}{r}"] = delta(f"slatestream_{r}_dlq_total") / dt
        f[f"Scorer request latency{SEP}p50"] = quant(0.5, "slatestream_scorer_request_seconds")
        f[f"Scorer request latency{SEP}p99"] = quant(0.99, "slatestream_scorer_request_seconds")
        fresh = (
            ("event → features", "slatestream_features_freshness_seconds"),
            ("feedback → model", "slatestream_trainer_freshness_seconds"),
            ("snapshot → scorer", "slatestream_scorer_snapshot_load_seconds"),
        )
        for line, metric in fresh:
            f[f"Freshness p99{SEP}{line}"] = quant(0.99, metric)
        for p in by("slatestream_scorer_feedback_total", "policy"):

            def pol(lab: dict[str, str], p: str = p) -> bool:
                return lab.get("policy") == p

            fb = delta("slatestream_scorer_feedback_total", pol)
            if fb > 0:
                f[f"CTR by policy{SEP}{p}"] = delta("slatestream_scorer_clicks_total", pol) / fb
        for p in by("slatestream_scorer_slate_items_total", "policy"):

            def pol2(lab: dict[str, str], p: str = p) -> bool:
                return lab.get("policy") == p

            items = delta("slatestream_scorer_slate_items_total", pol2)
            if items > 0:
                explored = delta("slatestream_scorer_explored_items_total", pol2)
                f[f"Exploration share{SEP}{p}"] = explored / items
        if total("slatestream_trainer_train_steps_total") > 0:
            f[f"Training loss{SEP}last step"] = total("slatestream_trainer_loss")
        f[f"Model version{SEP}trainer wrote"] = total("slatestream_trainer_model_version")
        f[f"Model version{SEP}scorer serves"] = total("slatestream_scorer_model_version")
        return f


# --- rendering ---------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "panel"


def render_panels(
    series: Mapping[str, Sequence[tuple[float, float]]],
    out_dir: Path,
    title: str = "slatestream",
    units: Mapping[str, str] | None = None,
    xlabel: str = "seconds",
    per_panel: bool = True,
) -> list[Path]:
    """Draw `panels.png` with every panel (keys `"<panel> / <line>"`) and, with `per_panel`,
    one `panel_<name>.png` each.

    Panels are ordered as in PANELS, then any others; a panel without points is drawn with
    "no data". Returns the written paths, the grid first.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = dict(units or {p.title: p.unit for p in PANELS})
    grouped: dict[str, dict[str, Sequence[tuple[float, float]]]] = defaultdict(dict)
    for key, pts in series.items():
        panel, _, line = key.partition(SEP)
        grouped[panel][line or panel] = pts
    order = [p.title for p in PANELS if p.title in grouped]
    order += sorted(set(grouped) - set(order))
    if not order:
        order = [p.title for p in PANELS]
    out_dir.mkdir(parents=True, exist_ok=True)

    def draw(ax: plt.Axes, panel: str) -> None:
        lines = grouped.get(panel, {})
        drawn = False
        for line, pts in sorted(lines.items()):
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=line, lw=1.4)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(panel, fontsize=10)
        ax.set_ylabel(units.get(panel, ""), fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="best")

    paths: list[Path] = []
    cols = 3 if len(order) > 4 else 2
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.2 * rows), squeeze=False)
    for i, panel in enumerate(order):
        draw(axes[i // cols][i % cols], panel)
    for j in range(len(order), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    grid = out_dir / "panels.png"
    fig.savefig(grid, dpi=100)
    plt.close(fig)
    paths.append(grid)
    for panel in order if per_panel else ():
        fig, ax = plt.subplots(figsize=(7, 3.6))
        draw(ax, panel)
        fig.tight_layout()
        path = out_dir / f"panel_{_slug(panel)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


# --- the command -------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `report` subcommand."""
    p = sub.add_parser("report", help="render the key dashboard panels from Prometheus to PNG")
    p.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://...:9090")
    p.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    p.add_argument("--range", dest="range_", default="15m", help="time range (15m, 1h, 90s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Query Prometheus over the range, render the panels, print the written paths."""
    if urllib.parse.urlparse(args.prometheus).scheme not in ("http", "https"):
        raise SlatestreamError(
            f"--prometheus: expected an http(s):// URL, e.g. http://127.0.0.1:9090, "
            f"not {args.prometheus!r}"
        )
    check_writable_dir(args.out, "--out")
    range_s = parse_duration(args.range_)
    series = fetch_series(args.prometheus, range_s)
    try:
        paths = render_panels(
            series, args.out, title=f"slatestream — last {args.range_}", xlabel="seconds into range"
        )
    except OSError as exc:  # e.g. the disk filled up or the directory went away meanwhile
        raise SlatestreamError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
    for path in paths:
        print(path)
    if not series:
        print("slatestream: note: Prometheus has no slatestream series in this range")
    return 0
