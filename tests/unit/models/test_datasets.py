"""Data set loaders on small files the tests write (no network, no real data)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.datasets import (
    ML100K_PREFIX,
    DatasetError,
    find_recbole_wheel,
    load_finn_slates,
    load_movielens_100k,
    parse_ml100k,
)

pytestmark = pytest.mark.timeout(10)

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t10\t4\t300\n1\t11\t3\t100\n2\t10\t5\t200\n1\t12\t1\t100\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "10\tA Film\t1995\tComedy Drama\n11\tB Film\t1994\tAction\n12\tC Film\t1990\t\n"
)


def test_parse_ml100k_fields_and_time_order() -> None:
    data = parse_ml100k(INTER, ITEM)
    assert len(data) == 4
    assert data.item_categories["10"] == "movies/Comedy"
    assert data.item_genres["10"] == ["Comedy", "Drama"]
    assert data.item_categories["12"] == "movies/unknown"
    seqs = data.user_sequences()
    assert [i for i, _ in seqs["1"]] == ["11", "12", "10"]  # stable on the tie at ts=100
    assert data.all_items() == ["10", "11", "12"]


def _fake_wheel(tmp_path: Path) -> Path:
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{ML100K_PREFIX}.inter", INTER)
        zf.writestr(f"{ML100K_PREFIX}.item", ITEM)
    return wheel


def test_load_from_cached_wheel_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_wheel(tmp_path)
    monkeypatch.setenv("SLATESTREAM_DATA_DIR", str(tmp_path))
    data = load_movielens_100k(download=False)
    assert data.name == "ml-100k" and len(data) == 4
    assert data.ratings.tolist() == [4.0, 3.0, 5.0, 1.0]


def test_missing_wheel_without_download_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="wheel not in"):
        find_recbole_wheel(tmp_path, download=False)


def test_wheel_without_dataset_rejected(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "recbole-1.2.1-py3-none-any.whl", "w") as zf:
        zf.writestr("recbole/__init__.py", "")
    with pytest.raises(DatasetError, match="no readable ml-100k"):
        load_movielens_100k(tmp_path, download=False)


def _finn_files(tmp_path: Path) -> tuple[Path, Path]:
    users, steps, width = 3, 4, 5
    rng = np.random.default_rng(0)
    slate = rng.integers(2, 40, size=(users, steps, width))
    lengths = np.full((users, steps), width)
    lengths[0, 3] = 0  # padding step
    click_idx = rng.integers(0, width, size=(users, steps))
    click = slate[np.arange(users)[:, None], np.arange(steps)[None, :], click_idx]
    click[1, 1] = 1  # no click
    click[0, 3] = 0
    np.savez(
        tmp_path / "data.npz",
        slate=slate,
        click=click,
        click_idx=click_idx,
        slate_lengths=lengths,
        interaction_type=np.ones((users, steps), np.int64),
        userId=np.arange(users),
    )
    np.savez(tmp_path / "itemattr.npz", category=np.arange(40) % 6)
    return tmp_path / "data.npz", tmp_path / "itemattr.npz"


def test_finn_slate_loader_and_feedback(tmp_path: Path) -> None:
    data_path, attr_path = _finn_files(tmp_path)
    data = load_finn_slates(data_path, attr_path)
    records = list(data.feedback())
    assert len(records) == 3 * 4 - 1  # the padding step is skipped
    no_click = next(r for r in records if r.user_id == "1" and r.ts == 1)
    assert no_click.clicked == []
    first = records[0]
    assert len(first.slate) == 5 and first.slate[first.clicked[0]] == str(data.click[0, 0])
    assert records[1].history == [first.slate[first.clicked[0]]]
    assert data.category_path(7) == "finn/1"


def test_finn_loader_rejects_bad_shapes(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", slate=np.zeros((2, 3)), click=np.zeros((2, 3)))
    with pytest.raises(DatasetError, match="lacks arrays"):
        load_finn_slates(tmp_path / "bad.npz")
    np.savez(
        tmp_path / "bad2.npz",
        slate=np.zeros((2, 3, 4)),
        click=np.zeros((2, 3)),
        click_idx=np.zeros((2, 2)),
        slate_lengths=np.zeros((2, 3)),
        interaction_type=np.zeros((2, 3)),
    )
    with pytest.raises(DatasetError, match="click_idx"):
        load_finn_slates(tmp_path / "bad2.npz")
    with pytest.raises(DatasetError, match="cannot read"):
        load_finn_slates(tmp_path / "missing.npz")
