"""``explain`` and ``replay`` read a run's events as one Parquet file or as a directory of parts
(what Spark and other engines write for a large table: ``events.parquet/``, hive ``key=value``
folders)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from test_score_explain import run_dir  # noqa: F401  (the fixture: a tiny run directory)

from detector.errors import InputError
from detector.schema import C
from detector.score.explain import explain, scan_table


def _partitioned(run: Path, into: str, by: str | None) -> Path:
    events = pl.read_parquet(run / "events.parquet")
    (run / "events.parquet").unlink()
    target = run / into
    if by is None:
        target.mkdir()
        for k, part in enumerate(events.iter_slices(max(1, events.height // 3))):
            part.write_parquet(target / f"part-{k:05d}.parquet")
    else:
        events.write_parquet(target, partition_by=by)
    return target


def _summary(ex) -> tuple:
    return (ex.kind, ex.verdict, ex.events_total, [line.text for line in ex.lines], ex.findings.height)


@pytest.mark.parametrize(
    ("into", "by"), [("events.parquet", None), ("events", None), ("events.parquet", C.ACTION)]
)
@pytest.mark.parametrize("target", ["Victim", "198.51.100.7"])
def test_explain_reads_partitioned_events(run_dir, tmp_path, into, by, target):  # noqa: F811
    one = _summary(explain(target, run_dir))
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    _partitioned(copy, into, by)
    assert not (copy / "events.parquet").is_file()
    assert _summary(explain(target, copy)) == one
    assert one[2] > 0


def test_a_directory_without_parts_is_an_input_error(tmp_path):
    (tmp_path / "events").mkdir()
    with pytest.raises(InputError, match="no Parquet part"):
        scan_table(tmp_path / "events")


@pytest.mark.parametrize("by", [None, C.OUTCOME])
def test_replay_reads_partitioned_events_as_one_file(run_dir, tmp_path, by):  # noqa: F811
    """``replay`` reads its events through ingestion's table input: a directory of parts gives the
    same events as the one file (the rows in another order: ingestion sorts them by time)."""
    from detector.config import Config
    from detector.ingest import ingest

    one = ingest([str(run_dir / "events.parquet")], Config().ingest, tmp_path / "one").events.collect()
    parts = _partitioned(run_dir, "events.parquet", by)
    got = ingest([str(parts)], Config().ingest, tmp_path / "parts").events.collect()
    assert one.height > 0
    assert got.sort(one.columns, nulls_last=True).equals(one.sort(one.columns, nulls_last=True))
