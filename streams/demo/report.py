"""The demo's report: a markdown summary and PNG plots (CTR per policy, latency, freshness)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streams.demo.driver import DemoResult


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def plot(res: DemoResult, out: Path) -> list[Path]:
    """Write ctr_over_time.png, latency.png, freshness.png into `out`; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for arm in sorted(res.slates):
        rows = [(j, c, e) for j, (_, a, c, e) in enumerate(res.slate_log) if a == arm]
        if not rows:
            continue
        t = np.array([r[0] for r in rows]) + 1
        clicks = np.array([r[1] for r in rows], dtype=float)
        expected = np.array([r[2] for r in rows])
        window = max(20, min(300, len(rows) // 5))
        kernel = np.ones(window) / window
        if len(rows) >= window:
            ax.plot(
                t[window - 1 :],
                np.convolve(expected, kernel, mode="valid"),
                label=f"{arm} (n={len(rows)})",
            )
        ax2.plot(t, np.cumsum(clicks) / np.arange(1, len(rows) + 1), label=arm)
    ax.set_title("expected clicks per slate under the users' true tastes (rolling mean)")
    ax.set_ylabel("expected clicks / slate")
    ax2.set_title("observed clicks per slate (cumulative)")
    ax2.set_ylabel("clicks / slate")
    ax2.set_xlabel("slates served, all arms (A/B arms split by user hash)")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "ctr_over_time.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    for name, values, title in (
        ("latency.png", res.latency_ms, "scorer latency per request (ms)"),
        ("roundtrip.png", res.roundtrip_ms, "request -> recommendation round trip (ms)"),
        ("freshness.png", res.freshness_ms, "freshness: click published -> visible to scorer (ms)"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4))
        xlabel = "ms"
        if values:
            v = np.asarray(values)
            hi = np.percentile(v, 99.5)
            # the slowest 0.5% would stretch the axis: they are counted in the last bin
            ax.hist(np.clip(v, 0, hi), bins=60, color="#4477aa")
            if v.max() > hi:
                xlabel = f"ms (the last bin also counts the {int((v > hi).sum()):,} samples "
                xlabel += f"above {hi:.1f} ms, up to {v.max():.1f} ms)"
            for q, style in ((50, "--"), (99, ":")):
                ax.axvline(
                    np.percentile(v, q),
                    color="k",
                    linestyle=style,
                    label=f"p{q} = {np.percentile(v, q):.2f} ms",
                )
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no samples", ha="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def write(
    res: DemoResult, out: Path, mode: str, elapsed_s: float, extra_pngs: list[Path] | None = None
) -> Path:
    """Write report.md (and the plots) into `out`; return the markdown path."""
    pngs = plot(res, out) + list(extra_pngs or [])
    lines = [
        "# slatestream demo report",
        "",
        f"- mode: **{mode}**; wall time {elapsed_s:.0f} s (warm-up {res.warmup_s:.1f} s: "
        f"catalogue + {res.warmup_events:,} history events; sessions {res.session_s:.0f} s)",
        f"- session events/s: {(res.events - res.warmup_events) / max(res.session_s, 1e-9):,.0f}"
        f" (requests + clicks published; the workers also consume impressions and feedback)",
        f"- events published: {res.events:,}; requests: {res.requests:,}; answered: "
        f"{res.answered:,}; errors: {res.errors}; duplicate answers: {res.duplicates}",
        f"- scorer latency p50 {_pct(res.latency_ms, 50):.2f} ms, p99 "
        f"{_pct(res.latency_ms, 99):.2f} ms; round trip p50 {_pct(res.roundtrip_ms, 50):.1f} ms,"
        f" p99 {_pct(res.roundtrip_ms, 99):.1f} ms",
        f"- freshness (click -> visible to the scorer) p50 {_pct(res.freshness_ms, 50):.1f} ms, "
        f"p99 {_pct(res.freshness_ms, 99):.1f} ms ({len(res.freshness_ms)} samples)",
        f"- model versions served: first {res.model_versions[0] if res.model_versions else '-'},"
        f" last {res.model_versions[-1] if res.model_versions else '-'}",
        "",
        "| policy (arm) | slates | clicks | CTR (clicks/slate) | expected CTR (true tastes) |"
        " distinct categories / slate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm in sorted(res.slates):
        n = res.slates[arm]
        div = float(np.mean(res.diversity[arm])) if res.diversity[arm] else 0.0
        lines.append(
            f"| {arm} | {n:,} | {res.clicks[arm]:,} | {res.ctr(arm):.4f} | "
            f"{res.expected[arm] / n if n else 0:.4f} | {div:.2f} |"
        )
    lines += ["", *[f"![{p.stem}]({p.name})" for p in pngs], ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    return md
