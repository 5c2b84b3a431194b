"""Per-source tables of a large night, one source bucket at a time: the same tables as in one pass."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from score_frames import synthetic_world

from detector.config import Config
from detector.schema import C
from detector.score import sources
from detector.score import verdicts as v
from detector.score.sources import by_source, source_buckets
from detector.workers import Workers


@pytest.mark.parametrize(
    ("events", "per_bucket", "want"), [(0, 10, 1), (10, 10, 1), (11, 10, 2), (95, 10, 10)]
)
def test_bucket_count(events: int, per_bucket: int, want: int) -> None:
    assert source_buckets(events, per_bucket) == want


@pytest.mark.parametrize("buckets", [2, 3, 7])
def test_every_event_of_an_address_in_one_bucket_in_its_order(buckets: int) -> None:
    df = synthetic_world(seed=1)[0].with_columns(
        pl.when(pl.col(C.EVENT_ID) % 9 == 0).then(None).otherwise(pl.col(C.SOURCE_IP)).alias(C.SOURCE_IP)
    )
    parts = [p.collect() for p in by_source(df, buckets)]
    assert sum(p.height for p in parts) == df.height
    seen = [set(p.get_column(C.SOURCE_IP).to_list()) for p in parts]
    assert all(a.isdisjoint(b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    assert all(p.get_column(C.EVENT_ID).is_sorted() for p in parts)


def _shards(tmp_path: Path, seed: int, n: int) -> tuple[Path, ...]:
    df = synthetic_world(seed=seed, accounts=90)[0].drop("is_attack")
    tmp_path.mkdir()
    paths = []
    for k in range(n):
        paths.append(tmp_path / f"detection-{k}.parquet")
        df.filter(pl.col(C.ACCOUNT).hash(seed=0) % n == k).write_parquet(paths[-1])
    return tuple(paths)


@pytest.mark.parametrize(("seed", "buckets"), [(0, 2), (1, 3), (2, 5), (3, 16)])
def test_scores_the_same_in_any_number_of_source_buckets(tmp_path, monkeypatch, seed, buckets) -> None:
    one = v.score_shards(_shards(tmp_path / "one", seed, 3), None, Config())
    monkeypatch.setattr(v, "source_buckets", lambda events: buckets)
    many = v.score_shards(_shards(tmp_path / "many", seed, 3), None, Config())
    assert many.sources.equals(one.sources)
    assert many.accounts.equals(one.accounts)


def test_source_context_per_bucket_is_the_whole_nights() -> None:
    df = synthetic_world(seed=4)[0].with_columns(pl.lit(0.3).alias(C.RISK_SCORE))
    whole = sources.source_context(df).sort(C.SOURCE_IP, nulls_last=True)
    assert sources.source_context(df, 5).sort(C.SOURCE_IP, nulls_last=True).equals(whole)


class _Pool(Workers):
    """Stands for worker processes: ``parallel``, tasks run here."""

    def __init__(self, n: int) -> None:
        super().__init__(1, Path("."))
        self.n = n
        self.items: list = []

    @property
    def parallel(self) -> bool:
        return True

    def map(self, fn, items, ctx):
        items = list(items)
        self.items += [(fn.__name__, item) for item in items]
        return super().map(fn, items, ctx)


@pytest.mark.parametrize(("seed", "n"), [(5, 2), (6, 3)])
def test_source_buckets_in_the_workers_give_the_one_table(tmp_path, seed, n) -> None:
    one = v.score_shards(_shards(tmp_path / "one", seed, 3), None, Config())
    pool = _Pool(n)
    many = v.score_shards(_shards(tmp_path / "many", seed, 3), None, Config(), workers=pool)
    # each shard split once into n buckets, then one task per bucket over its pieces
    assert [item[1] for name, item in pool.items if name == "source_pieces_task"] == [0, 1, 2]
    assert len([item for name, item in pool.items if name == "source_rows_task"]) == n
    assert many.sources.equals(one.sources)
    assert many.accounts.equals(one.accounts)
