"""ItemIndex / CategoryVocab: admission, hierarchy, eviction and JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from models.items import PAD, CategoryVocab, ItemIndex

pytestmark = pytest.mark.timeout(10)


def test_category_prefixes_get_hierarchical_ids() -> None:
    vocab = CategoryVocab(max_depth=3)
    a = vocab.path_ids("movies/comedy")
    b = vocab.path_ids("movies/drama/")
    assert a[0] == b[0]  # shared "movies" group
    assert a[1] != b[1]
    assert vocab.name(a[1]) == "movies/comedy"
    assert vocab.path_ids("x/y/z/w") == vocab.path_ids("x/y/z")  # depth capped
    assert vocab.path_ids("unknown/path", admit=False) == []
    assert vocab.path_ids(None) == []


def test_admit_is_idempotent_and_rows_start_at_one() -> None:
    idx = ItemIndex()
    r1 = idx.admit("i1", "movies/comedy")
    assert r1 == 1 and idx.admit("i1") == 1
    assert idx.admit("i2") == 2
    assert idx.rows(["i2", "nope", "i1"]).tolist() == [2, PAD, 1]
    assert idx.known_rows(["nope", "i2"]).tolist() == [2]
    assert idx.category("i1") == "movies/comedy"
    groups = idx.group_matrix()
    assert groups.shape == (3, 4)
    assert (groups[1, :2] > 0).all() and (groups[2] == 0).all()


def test_category_can_be_set_later_and_version_changes() -> None:
    idx = ItemIndex()
    idx.admit("i1")
    v = idx.version
    idx.admit("i1", "a/b")
    assert idx.version > v
    assert (idx.group_matrix()[1, :2] > 0).all()


def test_lru_eviction_reuses_rows() -> None:
    idx = ItemIndex(max_items=2)
    idx.admit("a")
    idx.admit("b")
    idx.touch("a")  # b becomes least recently used
    row_c = idx.admit("c")
    assert "b" not in idx and "a" in idx and "c" in idx
    assert row_c == 2  # b's row reused
    assert idx.evicted_rows == [2]
    assert idx.active_mask().tolist() == [False, True, True]


def test_growth_beyond_initial_group_capacity() -> None:
    idx = ItemIndex()
    for i in range(100):
        idx.admit(f"i{i}", f"c{i % 7}/s{i % 3}")
    assert len(idx) == 100 and idx.n_rows == 101
    assert idx.group_matrix().shape == (101, 4)
    assert np.array_equal(idx.active_rows(), np.arange(1, 101))


def test_json_round_trip_keeps_rows_and_groups() -> None:
    idx = ItemIndex(max_items=5)
    for i in range(7):
        idx.admit(f"i{i}", "x/y" if i % 2 else "z")
    restored = ItemIndex.from_json(idx.to_json())
    assert (
        restored.rows([f"i{i}" for i in range(7)]).tolist()
        == idx.rows([f"i{i}" for i in range(7)]).tolist()
    )
    assert np.array_equal(restored.group_matrix(), idx.group_matrix())
    restored.admit("new")  # LRU order survived: the oldest remaining item is evicted
    assert "i2" not in restored


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        ItemIndex(max_items=0)
    with pytest.raises(ValueError):
        CategoryVocab(max_depth=0)
