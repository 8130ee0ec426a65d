"""`slatestream evaluate`: flags the chosen protocol would silently ignore, a negative seed and
an unwritable --plot are one error line (exit 2) before any data is loaded or model trained."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import models.datasets
from streams import cli

_PREQ = ["evaluate", "--protocol", "prequential", "--model", "pop", "--max-events", "50"]
_LOO = ["evaluate", "--protocol", "loo", "--model", "gru"]


@pytest.fixture(autouse=True)
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case here must stop before the data set is read (and so before any training)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluate must refuse the flags before loading data")

    monkeypatch.setattr(models.datasets, "load_movielens_100k", refuse)


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], fragment: str) -> None:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("slatestream: error: ") and err.count("\n") == 1, err
    assert fragment in err and "Traceback" not in err and out == ""


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([*_PREQ, "--exclude-seen"], "--exclude-seen only applies to --protocol loo"),
        ([*_PREQ, "--one-pass"], "--one-pass only applies to --protocol loo"),
        ([*_PREQ, "--epochs", "5"], "--epochs only applies to --protocol loo"),
        ([*_PREQ, "--epochs", "100"], "--epochs only applies"),  # the old default, given
        ([*_PREQ, "--patience", "3", "--one-pass"], "--patience, --one-pass only apply"),
        ([*_LOO, "--bucket", "100"], "--bucket only applies to --protocol prequential"),
        ([*_LOO, "--max-events", "100"], "--max-events only applies to --protocol prequential"),
        ([*_LOO, "--plot", "x.png"], "--plot is for --protocol prequential"),
        ([*_LOO, "--seed", "-1"], "--seed must be >= 0, not -1"),
        ([*_PREQ, "--seed", "-7"], "--seed must be >= 0, not -7"),
        ([*_LOO, "--epochs", "0"], "--epochs, --patience, --dim and --hidden must be >= 1"),
    ],
)
def test_flags_the_protocol_would_ignore_and_bad_seed(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_line_error(argv, capsys, fragment)


@pytest.mark.timeout(30)
def test_unwritable_plot_fails_before_the_run(
    unwritable_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = unwritable_dir / "hr10.png"
    _one_line_error([*_PREQ, "--plot", str(plot)], capsys, f"cannot write in {unwritable_dir}")


@pytest.mark.timeout(30)
@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_read_only_existing_plot_file_fails_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "hr10.png"
    plot.write_bytes(b"")
    plot.chmod(0o444)
    _one_line_error([*_PREQ, "--plot", str(plot)], capsys, "cannot write the file")
