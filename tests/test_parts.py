"""Rows split by a hashed key: every row in exactly one part, in its order, each key whole."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.parts import hash_part, key_part, parquet_rows, split_rows, write_parts

keys = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "A", "c@x", "192.0.2.1", ""])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(keys, st.integers(1, 7))
def test_split_rows_keeps_every_row_once_in_order_and_each_key_whole(values, n):
    frame = pl.DataFrame({"k": values, "i": range(len(values))}, schema={"k": pl.String, "i": pl.Int64})
    parts = split_rows(frame, hash_part(pl.col("k"), n), n)
    assert len(parts) == n
    assert all(p.columns == frame.columns for p in parts)
    assert sorted(i for p in parts for i in p["i"]) == list(range(len(values)))
    assert all(p["i"].is_sorted() for p in parts)
    homes = {}
    for j, p in enumerate(parts):
        for k in p["k"]:
            assert homes.setdefault(k, j) == j


@pytest.mark.parametrize("n", [1, 2, 5])
def test_key_part_filters_select_the_same_rows_as_split_rows(n):
    frame = pl.DataFrame({"k": ["a", None, "b", "a", None, "z"]})
    parts = split_rows(frame, hash_part(pl.col("k"), n), n)
    for j in range(n):
        assert frame.filter(key_part("k", n, j)).equals(parts[j])


def test_parquet_rows_reads_the_footers(tmp_path):
    paths = []
    for rows in (0, 3, 5):
        path = tmp_path / f"p{rows}.parquet"
        pl.DataFrame({"x": list(range(rows))}, schema={"x": pl.Int64}).write_parquet(path)
        paths.append(path)
    assert parquet_rows(paths) == 8
    assert parquet_rows([]) == 0


def test_write_parts_writes_every_part_empty_ones_too_in_order(tmp_path):
    frame = pl.DataFrame({"k": ["a", "b", "a"], "i": [0, 1, 2]})
    parts = split_rows(frame, hash_part(pl.col("k"), 4), 4)
    paths = write_parts(parts, lambda j: tmp_path / f"p-{j}.parquet")
    assert paths == [tmp_path / f"p-{j}.parquet" for j in range(4)]
    assert all(pl.read_parquet(path).equals(part) for path, part in zip(paths, parts, strict=True))
