"""`slatestream model` and `slatestream evaluate` subcommands (called through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.baselines import PopularityModel
from models.registry import ModelRegistry

pytestmark = pytest.mark.timeout(20)

cli = pytest.importorskip("streams.cli")


def test_model_list_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = ModelRegistry(tmp_path)
    reg.publish(PopularityModel())
    reg.publish(PopularityModel())
    assert cli.main(["model", "list", "--registry", str(tmp_path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["version"] for x in lines] == [1, 2] and all(x["valid"] for x in lines)
    assert cli.main(["model", "rollback", "1", "--registry", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"rolled_back_to": 1, "new_version": 3, "registry": str(tmp_path)}


@pytest.mark.parametrize(
    "argv",
    [
        ["model", "rollback", "--registry", "{tmp}"],
        ["model", "rollback", "abc", "--registry", "{tmp}"],
        ["model", "rollback", "42", "--registry", "{tmp}"],
        ["model", "list", "--registry", "{tmp}/missing"],
        ["evaluate", "--model", "nonsense"],
        ["evaluate", "--protocol", "loo", "--model", "gru,pop"],
        ["evaluate", "--epochs", "0"],
        ["evaluate", "--protocol", "loo", "--plot", "x.png"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ModelRegistry(tmp_path).publish(PopularityModel())
    code = cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("slatestream: error:") and "\n" not in err and "Traceback" not in err


def test_corrupt_snapshot_listed_as_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = ModelRegistry(tmp_path)
    reg.publish(PopularityModel())
    (tmp_path / "v00000001" / "state.json").write_text("{}")
    assert cli.main(["model", "list", "--registry", str(tmp_path)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["valid"] is False and "checksum" in row["reason"]
    assert cli.main(["model", "rollback", "1", "--registry", str(tmp_path)]) == 2
    assert "checksum" in capsys.readouterr().err
