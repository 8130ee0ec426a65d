"""`slatestream ope --logs` reads a dump of the pipeline's own feedback topic (click objects,
late records) and turns hostile input (deep nesting, huge numbers) into one-line errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from bandits.base import FeedbackError
from bandits.ope import parse_feedback_lines, parse_feedback_log
from streams.commands import ope
from streams.schemas import Click, Feedback

ITEMS = [f"i{j}" for j in range(6)]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slatestream")
    ope.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _feedback(n: int, rng: np.random.Generator, *, late: bool = False, props: bool = True) -> bytes:
    """One feedback-topic record as the joiner writes it (Feedback.to_json)."""
    slate = [str(s) for s in rng.choice(ITEMS, size=3, replace=False)]
    clicks = []
    if rng.random() < 0.4:
        p = int(rng.integers(3))
        clicks.append(
            Click(position=p, item_id=slate[p], type="click", delay_ms=50, event_id=f"e{n}")
        )
        # a second interaction on the same item (a purchase) must count as one clicked position
        clicks.append(
            Click(position=p, item_id=slate[p], type="purchase", delay_ms=90, event_id=f"p{n}")
        )
    fb = Feedback(
        event_id=f"fb-{n}" + ("-late" if late else ""),
        ts=1_764_000_000_000 + n,
        user_id=f"u{n % 7}",
        request_id=f"r-{n}",
        slate=slate,
        propensities=[1 / 6, 1 / 5, 1 / 4] if props else None,
        policy="random",
        served_at=1_764_000_000_000,
        clicks=clicks,
        window_ms=1_800_000,
        late=late,
    )
    return fb.to_json()


def _write(path: Path, records: list[bytes]) -> Path:
    path.write_bytes(b"".join(r + b"\n" for r in records))
    return path


def test_feedback_topic_records_parse_with_positions_and_late_skipped() -> None:
    rng = np.random.default_rng(1)
    recs = [_feedback(n, rng) for n in range(40)]
    recs.insert(10, _feedback(10, rng, late=True))
    recs.append(recs[3])  # a redelivered record: same event_id
    log = parse_feedback_log([r.decode() for r in recs])
    assert len(log.records) == 40
    assert log.skipped == {"late": 1, "duplicate": 1}
    for raw, fb in zip([r for r in recs if b"-late" not in r], log.records, strict=False):
        want = Feedback.model_validate_json(raw).clicked_positions
        assert list(fb.clicks) == want
        assert fb.propensities is not None
    # plain records are still read as before
    assert parse_feedback_lines(['{"slate": ["a", "b"], "clicks": [1], "propensities": [1, 1]}'])


@pytest.mark.parametrize(
    "rec, msg",
    [
        ({"slate": ["a", "b"], "clicks": [{"item_id": "a"}]}, "no integer 'position'"),
        ({"slate": ["a", "b"], "clicks": [{"position": 0, "item_id": "b"}]}, "not at position 0"),
        ({"slate": ["a", "b"], "clicks": [{"position": 5, "item_id": "b"}]}, "outside slate"),
        ({"slate": ["a", "b"], "clicks": [{"position": 0}, 1]}, "mixes click objects"),
        ({"slate": ["a"], "late": "yes"}, "'late' must be true or false"),
    ],
)
def test_bad_click_objects_are_feedback_errors(rec: dict[str, object], msg: str) -> None:
    with pytest.raises(FeedbackError, match=msg):
        parse_feedback_lines([json.dumps(rec)], "f.jsonl")


@pytest.mark.timeout(30)
def test_ope_cli_runs_on_a_feedback_topic_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(2)
    recs = [_feedback(n, rng, late=(n % 25 == 24)) for n in range(200)]
    path = _write(tmp_path / "feedback.jsonl", recs)
    code = _run(["ope", "--logs", str(path), "--policy", "greedy", "--json"])
    assert code == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["skipped"] == {"late": 8, "duplicate": 0}
    assert out["train_records"] + out["eval_records"] == 192
    assert {"ips", "snips", "dr"} <= set(out["results"])
    assert _run(["ope", "--logs", str(path), "--policy", "greedy"]) == 0
    assert "8 late" in capsys.readouterr().out


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "content, msg",
    [
        ("[" * 100_000 + "\n", ":1: not valid JSON (nested too deeply)"),
        (
            '{"slate": ["a"], "propensities": [1' + "0" * 400 + "]}\n",
            ":1: a number is out of range",
        ),
        ('{"slate": ["a"], "propensities": [1' + "0" * 5000 + "]}\n", ":1: not valid JSON"),
    ],
)
def test_hostile_json_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, msg: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert _run(["ope", "--logs", str(path), "--policy", "greedy"]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.timeout(30)
def test_feedback_dump_without_propensities_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    path = _write(tmp_path / "fb.jsonl", [_feedback(n, rng, props=False) for n in range(10)])
    assert _run(["ope", "--logs", str(path), "--policy", "greedy"]) == 2
    err = capsys.readouterr().err
    assert "fb.jsonl:6: no propensities logged" in err and err.count("\n") == 1


@pytest.mark.timeout(30)
def test_only_late_records_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    path = _write(tmp_path / "late.jsonl", [_feedback(n, rng, late=True) for n in range(3)])
    assert _run(["ope", "--logs", str(path), "--policy", "greedy"]) == 2
    err = capsys.readouterr().err
    assert "no feedback records to evaluate (3 late" in err and err.count("\n") == 1
