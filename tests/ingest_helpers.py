"""Helpers for the ingestion tests: run the real pipeline on a few hand-written lines."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from detector.config import IngestConfig
from detector.ingest import IngestResult, _Effects, _parse_batch, ingest
from detector.ingest.registry import ENVELOPE_SCHEMA
from detector.ingest.sources import LINE_SCHEMA, InputFile
from detector.schema import C

MTIME = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 23, 3, 14, 15, tzinfo=UTC)


def envelope(rows: list[tuple[str | None, str]]) -> pl.DataFrame:
    """Envelope rows (``program``, ``message``) at :data:`T0`, as a parser receives them."""
    n = len(rows)
    return pl.DataFrame(
        {
            C.TIMESTAMP: [T0] * n,
            C.HOST: ["mx1"] * n,
            "program": [r[0] for r in rows],
            "pid": [None] * n,
            "message": [r[1] for r in rows],
            C.SOURCE_FILE: ["mail.log"] * n,
            C.LINE_NUMBER: list(range(1, n + 1)),
        },
        schema=ENVELOPE_SCHEMA,
    )


def write_log(path: Path, lines: list[str], mtime: datetime = MTIME) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def run(tmp_path: Path, lines: list[str], name: str = "mail.log", **cfg) -> tuple[pl.DataFrame, IngestResult]:
    """Ingest ``lines`` written to one file; returns (events, result)."""
    log = write_log(tmp_path / name, lines)
    result = ingest([str(log)], IngestConfig(**cfg), tmp_path / "work")
    return result.events.collect(), result


def one(tmp_path: Path, line: str, **cfg) -> dict:
    """The single event one line becomes (fails if it becomes none or several)."""
    events, result = run(tmp_path, [line], **cfg)
    assert len(events) == 1, (events, result.noise, result.quarantine)
    return events.row(0, named=True)


def parse_lines(lines: list[str], cfg: IngestConfig, fast: bool) -> tuple[pl.DataFrame, _Effects]:
    """``lines`` as one batch of file ``x`` (numbered from 1) through ingestion's parsing step:
    its events and its effects (noise, quarantine, claimed lines)."""
    batch = pl.DataFrame(
        {
            C.SOURCE_FILE: ["x"] * len(lines),
            C.LINE_NUMBER: list(range(1, len(lines) + 1)),
            C.RAW: lines,
            "invalid_utf8": [False] * len(lines),
        },
        schema=LINE_SCHEMA,
    )
    return _parse_batch(batch, InputFile("x", None, MTIME), cfg, {}, fast=fast)
