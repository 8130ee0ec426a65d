"""`slatestream ope`: estimates from a JSON-lines log; bad input is one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bandits import RandomPolicy
from bandits.simulators import SyntheticSimulator
from streams.commands import ope

ROOT = Path(__file__).resolve().parents[3]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slatestream")
    ope.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = SyntheticSimulator(n_users=30, n_items=15, churn_rate=0.0, seed=3)
    logger = RandomPolicy(seed=3)
    path = tmp_path_factory.mktemp("ope") / "feedback.jsonl"
    with path.open("w") as fh:
        for _ in range(1500):
            req = sim.next_request()
            s = logger.select(req.candidates, 3)
            fb = sim.respond(req, s.items, s.propensities)
            rec = {
                "user_id": fb.user_id,
                "slate": list(fb.slate),
                "clicks": list(fb.clicks),
                "propensities": list(fb.propensities or ()),
            }
            fh.write(json.dumps(rec) + "\n")
    return path


@pytest.mark.timeout(20)
def test_ope_json_output(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(["ope", "--logs", str(log_file), "--policy", "greedy", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train_records"] == 750 and out["eval_records"] == 750
    assert set(out["results"]) == {"ips", "snips", "dr", "pi"}
    for r in out["results"].values():
        assert r["ci_low"] <= r["estimate"] <= r["ci_high"]
        assert 0 < r["ess"] <= 750


@pytest.mark.timeout(20)
def test_ope_table_output(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(
        [
            "ope",
            "--logs",
            str(log_file),
            "--policy",
            "epsilon-greedy",
            "--epsilon",
            "0.3",
            "--estimators",
            "ips,snips",
            "--train-fraction",
            "0.2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "ips" in out and "snips" in out and "dr " not in out


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "lines, msg",
    [
        (['{"slate": ["a", "b"], "clicks": [0]}'], "no propensities logged"),
        (['{"slate": ["a", "b"], "clicks": [0], "propensities": [0.5, 0]}'], "position 1 is 0"),
        (["not json"], "not valid JSON"),
    ],
)
def test_bad_logs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], msg: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines * 4) + "\n")
    code = _run(["ope", "--logs", str(path), "--policy", "random", "--train-fraction", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.timeout(20)
def test_missing_file_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["ope", "--logs", str(tmp_path / "nope.jsonl"), "--policy", "ts"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert _run(["ope", "--logs", "x", "--policy", "ts", "--train-fraction", "1.5"]) == 2
    assert _run(["ope", "--logs", "x", "--policy", "ts", "--epsilon", "0.1"]) == 2
    assert _run(["ope", "--logs", "x", "--policy", "greedy", "--quantile", "0.9"]) == 2
    assert "--quantile only applies" in capsys.readouterr().err


@pytest.mark.timeout(20)
def test_bayes_ucb_target(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ope", "--logs", str(log_file), "--policy", "bayes-ucb", "--json"]
    assert _run([*args, "--quantile", "0.9"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "bayes-ucb" and out["eval_records"] == 750
    assert _run([*args, "--quantile", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "quantile must be in (0, 1)" in err and err.count("\n") == 1


@pytest.mark.timeout(60)
def test_cli_subprocess_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "zero.jsonl"
    path.write_text('{"slate": ["a"], "clicks": [], "propensities": [0.0]}\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "ope", "--logs", str(path), "--policy", "greedy"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=50,
    )
    assert proc.returncode == 2, proc.stderr
    assert "propensity at position 0 is 0.0" in proc.stderr
    assert "Traceback" not in proc.stderr
