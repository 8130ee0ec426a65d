"""Bad input to any `slatestream` subcommand: one `slatestream: error: …` line on stderr and
exit code 2 — no traceback, no hang, no silent success. No Kafka or Redis server is needed:
closed ports, a listener that is not Kafka and a fake HTTP server stand in for them."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from models.datasets import npz_bytes
from streams import cli

pytestmark = pytest.mark.usefixtures("clean_env")  # state (demo registries) goes to tmp


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse usage errors exit from parse_args
        return int(exc.code or 0)


def assert_one_line_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str
) -> str:
    """Run the CLI; assert exit code 2 and exactly one `slatestream: error:` line naming
    every `expected` fragment; return that line."""
    capsys.readouterr()
    code = _main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("slatestream: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for frag in expected:
        assert frag in err, err
    return err


@pytest.fixture
def not_kafka() -> Iterator[str]:
    """host:port of a listener that accepts connections and never speaks Kafka."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join(timeout=2)
    for conn in held:
        conn.close()
    srv.close()


# --- the parser -------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_no_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error([], capsys, "no COMMAND given")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["ope", "--logs", "x.jsonl", "--policy", "nope"], "invalid choice: 'nope'"),
        (["ope", "--policy", "greedy"], "--logs"),
        (["nope"], "invalid choice: 'nope'"),
        (["evaluate", "--epochs", "ten"], "invalid int value: 'ten'"),
        (["stack", "sideways"], "invalid choice: 'sideways'"),
        (["report", "--prometheus", "http://x", "--range", "-5m"], "--range"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_error(argv, capsys, fragment, "--help")


# --- features -----------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_features_without_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(["features"], capsys, "ACTION")


@pytest.mark.timeout(30)
def test_features_show_negative_popular(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(["features", "show", "--popular", "-5"], capsys, "--popular")


@pytest.mark.timeout(30)
def test_features_rebuild_bad_batch_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    store = f"redis://127.0.0.1:{_closed_port()}/0"
    argv = ["features", "rebuild", "--store", store, "--batch", "0"]
    assert_one_line_error(argv, capsys, "--batch must be >= 1")


# --- ope ------------------------------------------------------------------------------------------
@pytest.fixture
def feedback_log(tmp_path: Path) -> Path:
    path = tmp_path / "fb.jsonl"
    recs = [
        {"user_id": f"u{i}", "slate": ["a", "b"], "clicks": [i % 2], "propensities": [0.5, 0.5]}
        for i in range(20)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


@pytest.mark.timeout(30)
def test_ope_errors_use_the_common_prefix(
    feedback_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ope", "--logs", str(feedback_log), "--policy", "greedy", "--k", "0"]
    assert_one_line_error(argv, capsys, "--k must be >= 1")


@pytest.mark.timeout(30)
def test_ope_empty_estimator_list(feedback_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ope", "--logs", str(feedback_log), "--policy", "greedy", "--estimators", ","]
    assert_one_line_error(argv, capsys, "no estimator given")


@pytest.mark.timeout(30)
def test_ope_binary_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage\n")
    argv = ["ope", "--logs", str(path), "--policy", "greedy"]
    assert_one_line_error(argv, capsys, str(path), "not UTF-8")


# --- evaluate ----------------------------------------------------------------------------------
_FAST_PREQ = ["evaluate", "--protocol", "prequential", "--model", "pop", "--max-events", "50"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--lr", "inf"], "--lr must be a finite number > 0"),
        (["--threads", "-1"], "--threads must be >= 1"),
        (["--plot", "{tmp}/missing/x.png"], "does not exist"),
        (["--plot", "{tmp}"], "is a directory"),
        (["--plot", "{tmp}/x.txt"], "unknown image format '.txt'"),
    ],
)
def test_evaluate_bad_flags_fail_before_the_run(
    extra: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _FAST_PREQ + [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert_one_line_error(argv, capsys, fragment)


@pytest.mark.timeout(60)
def test_evaluate_data_dir_that_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "datasets"
    not_a_dir.write_text("")
    monkeypatch.setenv("SLATESTREAM_DATA_DIR", str(not_a_dir))
    assert_one_line_error(["evaluate", "--model", "pop"], capsys, "SLATESTREAM_DATA_DIR")


@pytest.mark.timeout(60)
def test_evaluate_wheel_that_is_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "recbole-1.2.1-py3-none-any.whl").mkdir()
    monkeypatch.setenv("SLATESTREAM_DATA_DIR", str(tmp_path))
    assert_one_line_error(["evaluate", "--model", "pop"], capsys, "no readable ml-100k files")


# --- model -------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("action", [["list"], ["rollback", "1"]])
def test_model_registry_with_malformed_meta(
    action: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "v00000001"
    snap.mkdir()
    (snap / "meta.json").write_text('{"sha256": "not-a-mapping", "kind": "gru"}')
    for name in ("model.safetensors", "state.json"):  # present: the checksums get looked up
        (snap / name).write_text("{}")
    code = _main(["model", *action, "--registry", str(tmp_path)])
    out, err = capsys.readouterr()
    if action == ["list"]:
        assert code == 0 and json.loads(out)["valid"] is False
    else:
        assert code == 2 and err.startswith("slatestream: error: cannot roll back")
        assert err.count("\n") == 1


@pytest.mark.timeout(60)
def test_model_list_of_an_empty_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(["model", "list", "--registry", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"slatestream: note: no model snapshots in {tmp_path}"


# --- replay ---------------------------------------------------------------------------------------
def _finn(tmp: Path, **changes: np.ndarray) -> Path:
    u, t, k = 2, 3, 4
    arrays = {
        "slate": np.full((u, t, k), 3),
        "click": np.full((u, t), 3),
        "click_idx": np.zeros((u, t), int),
        "slate_lengths": np.full((u, t), k),
        "interaction_type": np.ones((u, t), int),
        **changes,
    }
    path = tmp / "data.npz"
    path.write_bytes(npz_bytes(**arrays))
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--dataset", "ml-100k", "--rate", "nan"], "--rate must be >= 0"),
        (["--dataset", "ml-100k", "--limit", "-1"], "--limit must be >= 0"),
        (["--dataset", "ml-100k", "data.npz"], "ml-100k takes no data.npz path"),
        (["--dataset", "finn-slates"], "needs the path of data.npz"),
    ],
)
def test_replay_bad_flags(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_error(["replay", *argv], capsys, fragment)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: d / "empty.npz", "is not an .npz archive"),
        (lambda d: d / "x.csv", "is not an .npz archive"),
        (lambda d: d / "truncated.npz", "is not an .npz archive"),
        (lambda d: _finn(d, click=np.ones(2, int)), "click must be 2-D"),
        (lambda d: _finn(d, click=np.full((2, 3), np.nan)), "click must hold finite numbers"),
        (lambda d: _finn(d, slate=np.full((2, 3, 4), "a")), "slate must hold finite numbers"),
        (lambda d: _finn(d, slate_lengths=np.full((2, 3), -1)), "slate_lengths must be >= 0"),
    ],
)
def test_replay_bad_finn_file_is_reported_before_the_broker(
    make: object, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    good = npz_bytes(a=np.arange(100))
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    path = make(tmp_path)  # type: ignore[operator]
    argv = ["replay", "--dataset", "finn-slates", str(path)]
    assert_one_line_error(argv, capsys, "--dataset finn-slates", fragment)


@pytest.mark.timeout(60)
def test_replay_bad_itemattr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _finn(tmp_path)
    attr = tmp_path / "itemattr.npz"
    attr.write_bytes(npz_bytes(category=np.zeros((2, 2), int)))
    argv = ["replay", "--dataset", "finn-slates", str(data), "--itemattr", str(attr)]
    assert_one_line_error(argv, capsys, "category must be 1-D")


# --- report ---------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_report_bad_url_out_and_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(["report", "--prometheus", "nope"], capsys, "expected an http(s):// URL")
    a_file = tmp_path / "file"
    a_file.write_text("")
    argv = ["report", "--prometheus", "http://127.0.0.1:1", "--out", str(a_file)]
    assert_one_line_error(argv, capsys, "is not a directory")
    argv = ["report", "--prometheus", "http://127.0.0.1:1", "--range", "0s"]
    assert_one_line_error(argv, capsys, "must be > 0")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("body", [b"[1, 2]", b"<html>hello</html>", b'{"status": "success"}'])
def test_report_server_that_is_not_prometheus(
    body: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    http_server: Callable[[bytes], str],
) -> None:
    argv = ["report", "--prometheus", http_server(body), "--out", str(tmp_path / "r")]
    assert_one_line_error(argv, capsys, "answers, but not as Prometheus")


# --- check and the broker -----------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"SLATESTREAM_POLICY": "nope"}, "SLATESTREAM_POLICY: unknown policy 'nope'"),
        ({"SLATESTREAM_POLICY_ARMS": '{"nope": 1}'}, "SLATESTREAM_POLICY_ARMS: unknown policy"),
        ({"SLATESTREAM_SHADOW_POLICIES": '["zz"]'}, "SLATESTREAM_SHADOW_POLICIES: unknown"),
    ],
)
def test_check_rejects_unknown_policies(
    env: dict[str, str],
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert_one_line_error(["check"], capsys, fragment)


@pytest.mark.timeout(60)
def test_check_a_port_that_is_not_kafka(
    not_kafka: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", not_kafka)
    assert_one_line_error(["check"], capsys, "does not answer as a Kafka broker")


@pytest.mark.timeout(60)
def test_ensure_topics_on_a_port_that_is_not_kafka(not_kafka: str) -> None:
    from streams.broker import ensure_topics
    from streams.config import Settings
    from streams.errors import BrokerUnavailable

    with pytest.raises(BrokerUnavailable, match="does not answer as a Kafka broker"):
        ensure_topics(Settings(kafka_bootstrap=not_kafka))


# --- stack --------------------------------------------------------------------------------------
@pytest.fixture
def no_stack_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad flags must be refused before anything is started: fail loudly if `up` runs."""
    from deploy import stack

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("stack.up must not run on bad flags")

    monkeypatch.setattr(stack, "up", refuse)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--kafka-port", "0"], "--kafka-port must be a TCP port"),
        (["--redis-port", "70000"], "--redis-port must be a TCP port"),
        (["--kafka-port", "9092", "--redis-port", "9092"], "must differ"),
    ],
)
@pytest.mark.usefixtures("no_stack_start")
def test_stack_up_bad_ports(
    flags: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["stack", "up", "--state-dir", str(tmp_path), *flags]
    assert_one_line_error(argv, capsys, fragment)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pid", [0, 1, -5, "abc", True])
def test_stack_state_with_unusable_pids_is_not_a_stack(
    pid: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pid of 0 would make `stack down` signal its own process group: such a record is
    ignored, as an unreadable one is."""
    (tmp_path / "stack").mkdir()
    rec = {"kafka_bootstrap": "x:1", "redis_url": "redis://x:1/0", "root": str(tmp_path)}
    rec |= {"kafka_pid": pid, "redis_pid": pid}
    (tmp_path / "stack" / "stack.json").write_text(json.dumps(rec))
    assert _main(["stack", "status", "--state-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "# no stack recorded" and err == ""


# --- demo (only its bad-flag paths: nothing may start) -----------------------------------------
@pytest.fixture
def no_demo_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if the demo starts loading its world on bad flags."""
    from streams.demo.world import World

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo must not start on bad flags")

    monkeypatch.setattr(World, "movielens", refuse)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--duration", "-1"], "--duration must be"),
        (["--duration", "nan"], "--duration must be"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--k", "0"], "--k must be in 1..100"),
        (["--k", "101"], "--k must be in 1..100"),
        (["--warmup", "2"], "--warmup must be a share"),
        (["--arms", "nope"], "--arms: unknown policy 'nope'"),
        (["--arms", ","], "--arms: no policy given"),
        (["--out", "{tmp}/file"], "is not a directory"),
    ],
)
@pytest.mark.usefixtures("no_demo_start")
def test_demo_bad_flags(
    flags: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    out = [] if "--out" in flags else ["--out", str(tmp_path / "report")]
    assert_one_line_error(["demo", *out, *flags], capsys, fragment)


@pytest.mark.timeout(30)
def test_nan_event_weight_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_EVENT_WEIGHTS", '{"click": NaN}')
    assert_one_line_error(["check"], capsys, "SLATESTREAM_EVENT_WEIGHTS", "nan")


@pytest.mark.timeout(30)
def test_worker_checks_policy_and_loglevel_before_the_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A closed broker port would give a broker error: the policy and log level come first."""
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{_closed_port()}")
    assert_one_line_error(["worker", "--loglevel", "bogus"], capsys, "--loglevel")
    monkeypatch.setenv("SLATESTREAM_POLICY", "nope")
    assert_one_line_error(["worker", "--role", "scorer"], capsys, "SLATESTREAM_POLICY", "nope")


def test_an_os_error_is_one_line_and_a_bug_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command hitting an unwritable path, or failing on a bug, prints one line (the
    traceback only with -v)."""
    from streams.commands import check

    def unwritable(args: object) -> int:
        raise PermissionError(13, "Permission denied", "/ro/report.md")

    monkeypatch.setattr(check, "run", unwritable)
    assert _main(["check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["slatestream: error: Permission denied: /ro/report.md"]

    def buggy(args: object) -> int:
        raise KeyError("values")

    monkeypatch.setattr(check, "run", buggy)
    assert _main(["check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unexpected KeyError" in err[0] and "-v" in err[0]
    with pytest.raises(KeyError):
        _main(["-v", "check"])
