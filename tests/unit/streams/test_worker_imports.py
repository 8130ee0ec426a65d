"""A worker without the scorer or trainer role must not load torch (RSS ~90 MB, not ~700)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

PROBE = """
import sys
from streams.commands import worker
from streams.config import Settings
from streams.roles import build_handlers

class App:
    def task(self, fun):
        raise AssertionError("no topic reader for these roles")

settings = Settings(kafka_bootstrap="127.0.0.1:9", store_url="memory://")
handlers = build_handlers(settings, ["features", "joiner"])
worker._broadcast_to_scorers(App(), settings, handlers)
worker._warn_about_store(type("A", (), {"task": lambda self, f: f})(), settings, ["features"])
print("torch" in sys.modules)
"""


def test_features_and_joiner_roles_do_not_import_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


TRITON_PROBE = """
import sys
import streams
from models.gru import GRUConfig, GRUModel
from models.online_trainer import OnlineTrainer, TrainerConfig

t = OnlineTrainer(GRUModel(GRUConfig(dim=8, hidden=8)), TrainerConfig(step_every_events=8))
for j in range(40):
    t.on_interaction(f"u{j % 4}", f"i{j % 10}", "click", 1_764_000_000_000 + j, None)
print(t.updates, sys.modules.get("triton", "absent"))
"""


def test_workers_train_without_importing_triton() -> None:
    """Its extension printed ~30 'nanobind: leaked instances' lines at every worker's exit."""
    out = subprocess.run(
        [sys.executable, "-c", TRITON_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "None"], out.stdout
    assert "leaked" not in out.stderr
