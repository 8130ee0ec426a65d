"""The deploy configs are valid and consistent with the code.

promtool accepts the Prometheus config and rules; every metric the rules and the Grafana
dashboard use is defined in streams/metrics; docker-compose.yml has the services, ports
and only the SLATESTREAM_* variables the Settings object defines.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.config import ENV_PREFIX, Settings
from streams.metrics import all_sample_names
from streams.roles import ROLES

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "slatestream.json"
COMPOSE = ROOT / "docker-compose.yml"

RAW = re.compile(r"\bslatestream_[a-z0-9_]+")
RECORDED = re.compile(r"\bslatestream:[a-z0-9_:]+")
NAME_REGEX = re.compile(r'__name__=~"([^"]+)"')


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (bash deploy/dev.sh setup installs prometheus)")
    return path


def rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "rules.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def check_names(exprs: list[str], recorded: set[str]) -> list[str]:
    """Names in `exprs` that no code defines (raw) or no rule records (recorded)."""
    defined = all_sample_names()
    missing = []
    for expr in exprs:
        for pattern in NAME_REGEX.findall(expr):
            if not any(re.fullmatch(pattern, n) for n in defined):
                missing.append(pattern)
        plain = NAME_REGEX.sub("", expr)
        missing += [n for n in RAW.findall(plain) if n not in defined]
        missing += [n for n in RECORDED.findall(plain) if n not in recorded]
    return missing


@pytest.mark.timeout(30)
def test_promtool_check_config_and_rules() -> None:
    for args in (
        ["check", "config", str(PROM / "prometheus.yml")],
        ["check", "rules", str(PROM / "rules.yml")],
    ):
        res = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=25)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "SUCCESS" in res.stdout + res.stderr


@pytest.mark.timeout(10)
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # the check above can fail: a typo in PromQL is caught
    bad = tmp_path / "bad.yml"
    bad.write_text("groups: [{name: x, rules: [{record: 'a:b', expr: 'rate(x[1m]'}]}]\n")
    res = subprocess.run([promtool(), "check", "rules", str(bad)], capture_output=True, timeout=8)
    assert res.returncode != 0


@pytest.mark.timeout(30)
def test_the_expiring_requests_alert_fires_on_the_share_expired(tmp_path: Path) -> None:
    """`promtool test rules` on the shipped rules: 10% of requests answered 'expired' for
    10 minutes fires SlatestreamScorerRequestsExpiring; 1% does not."""
    cases = []
    for name, expired_per_min in (("high", 6), ("low", 1)):
        served_per_min = {"high": 54, "low": 99}[name]
        cases.append(
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'slatestream_scorer_request_errors_total{reason="expired",'
                        f'job="{name}"}}',
                        "values": f"0+{expired_per_min}x20",
                    },
                    {
                        "series": f'slatestream_scorer_recommendations_total{{policy="ts",'
                        f'job="{name}"}}',
                        "values": f"0+{served_per_min}x20",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "SlatestreamScorerRequestsExpiring",
                        "exp_alerts": (
                            [
                                {
                                    "exp_labels": {"severity": "warning"},
                                    "exp_annotations": {
                                        "summary": "10% of requests expire before a scorer "
                                        "reaches them (add scorers or partitions)"
                                    },
                                }
                            ]
                            if name == "high"
                            else []
                        ),
                    }
                ],
            }
        )
    for case in cases:
        spec = tmp_path / "expiring.yml"
        spec.write_text(json.dumps({"rule_files": [str(PROM / "rules.yml")], "tests": [case]}))
        res = subprocess.run(
            [promtool(), "test", "rules", str(spec)], capture_output=True, text=True, timeout=25
        )
        assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.timeout(10)
def test_every_metric_in_rules_and_dashboard_exists_in_code() -> None:
    rs = rules()
    recorded = {r["record"] for r in rs if "record" in r}
    assert len(recorded) >= 30 and all(n.startswith("slatestream:") for n in recorded)
    assert check_names([r["expr"] for r in rs], recorded) == []
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    assert check_names(exprs, recorded) == []
    # the checker itself catches a typo
    assert check_names(["rate(slatestream_scorer_request_secs_bucket[1m])"], recorded)
    assert check_names(["slatestream:nope:rate1m"], recorded)
    assert check_names(['{__name__=~"slatestream_.+_dlqs_total"}'], recorded)


@pytest.mark.timeout(10)
def test_rules_and_dashboard_cover_what_issue_7_asks() -> None:
    rs = rules()
    alerts = {r["alert"]: r["expr"] for r in rs if "alert" in r}
    text = "\n".join(alerts.values())
    assert "consumer_lag" in text and "deriv(" in text  # growing lag
    assert "dlq_total" in text
    assert "snapshot_age_seconds" in text  # stale model
    assert "scorer_request_seconds" in text  # scorer latency
    dash = "\n".join(dashboard_exprs())
    for needed in (
        "events_in",
        "events_out",
        "batch_seconds",
        "consumer_lag",
        "dlq",
        "store_op_seconds",
        "trainer_loss",
        "model_version",
        "snapshot_age_seconds",
        "features_freshness_seconds",
        "trainer_freshness_seconds",
        "snapshot_load_seconds",
        "scorer_request_seconds",
        "scorer_recommendations",
        "ctr",
        "exploration_share",
        "late_feedback",
    ):
        assert needed in dash, needed


@pytest.mark.timeout(10)
def test_docker_compose_services_ports_and_env() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"kafka", "redis", "prometheus", "grafana", *ROLES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    published = {name: [str(p) for p in svc.get("ports", [])] for name, svc in services.items()}
    assert any(p.endswith(":9092") for p in published["kafka"])
    assert any(p.endswith(":6379") for p in published["redis"])
    assert any(p.endswith(":9090") for p in published["prometheus"])
    assert any(p.endswith(":3000") for p in published["grafana"])
    for ports in published.values():  # loopback only
        assert all(p.startswith("127.0.0.1:") for p in ports), ports

    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in prom["scrape_configs"]
    }
    for role in ROLES:
        svc = services[role]
        assert svc["command"] == ["python", "-m", "streams", "worker", "--role", role]
        env = svc["environment"]
        names = {k for k in env if k.startswith(ENV_PREFIX)}
        assert names <= fields, names - fields
        assert env["SLATESTREAM_KAFKA_BOOTSTRAP"].split(":")[0] == "kafka"
        Settings(**{k[len(ENV_PREFIX) :].lower(): v for k, v in env.items()})  # valid values
        assert targets[f"slatestream-{role}"] == [f"{role}:{env['SLATESTREAM_METRICS_PORT']}"]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
    # mounted files exist where compose says
    for name in ("prometheus", "grafana"):
        for vol in services[name]["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), src
    # the Dockerfile copies only folders that exist
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src


@pytest.mark.timeout(10)
def test_grafana_provisioning_matches_compose_and_dashboard() -> None:
    graf = ROOT / "deploy" / "grafana" / "provisioning"
    provider = yaml.safe_load((graf / "dashboards" / "slatestream.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    ds = yaml.safe_load((graf / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["url"] == "http://prometheus:9090"
    dash = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    assert uids == {ds["uid"]}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_kafka_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-storage reads an id starting with '-' as an option (1 start in 64 failed)."""
    import uuid

    from deploy import stack

    dash = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))  # base64url '-' is 62: 0b111110xx
    plain = uuid.UUID(bytes=bytes(range(16)))
    ids = iter([dash, plain])
    monkeypatch.setattr(stack.uuid, "uuid4", lambda: next(ids))
    cid = stack.new_cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
    assert cid == stack.base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
