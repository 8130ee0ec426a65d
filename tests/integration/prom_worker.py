"""A trainer worker exactly as `slatestream worker --role trainer` wires it (Faust app, real
TrainerHandler, /metrics with consumer lag) — run by the Prometheus tests as a subprocess.

Used instead of the CLI because the CLI also opens the feature store for every role.
Settings come from SLATESTREAM_* env variables.
"""

from __future__ import annotations

import faust

from streams.app import bind_handler, create_app
from streams.broker import ensure_topics
from streams.config import load_settings
from streams.handlers.trainer import TrainerHandler
from streams.metrics.server import start_metrics_server


def main() -> None:
    settings = load_settings()
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    app = create_app(settings, group="trainer")
    handler = TrainerHandler(settings)
    bind_handler(app, handler, partitions=settings.partitions, within_s=0.05)
    srv = start_metrics_server(settings, roles=["trainer"], handlers=[handler], lag_interval_s=1.0)
    assert srv is not None, "SLATESTREAM_METRICS_PORT must be set"
    print(f"METRICS {srv.url}", flush=True)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
