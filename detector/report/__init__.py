"""Reports of a run: Parquet tables with metadata, ``summary.json`` and a self-contained ``report.html``.

:func:`write_reports` writes every report except ``events.parquet`` (which the orchestrator
streams) into a directory; the orchestrator publishes them. Contract: :mod:`detector.report.contract`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from detector.report import contract
from detector.report.parquet import write_parquet


@dataclass(frozen=True)
class RunData:
    """Everything the reports are built from.

    Attributes:
        meta: run metadata (the Parquet key-value metadata, without the per-file ``report`` key).
        events: the scored events as written to ``events.parquet`` (scanned, not in memory).
        tables: the other Parquet reports by file name, already conformed (and pseudonymised).
        lines_read: input lines read.
        noise: known non-event lines by kind.
        replay: the replay comparison of the plan (``detector.recommend.replay``'s result).
        replay_labelled: whether the replay used ground-truth labels.
        replay_kind: ``same_day`` (the plan on the logs it was built from) or ``next_day`` (the
            previous run's plan on these logs).
        previous_plan: the previous run's plan (from the state), to show what changed.
        overrides: operators' overrides in force (``detector.recommend.overrides.AUDIT_SCHEMA``).
        warnings: warnings of the run.
        fail_on: the ``--fail-on`` rule, described; attention: why the night needs attention.
    """

    meta: dict[str, Any]
    events: pl.LazyFrame
    tables: dict[str, pl.DataFrame]
    lines_read: int = 0
    noise: dict[str, int] = field(default_factory=dict)
    replay: Any = None
    replay_labelled: bool = False
    replay_kind: str = "same_day"
    previous_plan: pl.DataFrame | None = None
    overrides: pl.DataFrame | None = None
    warnings: tuple[str, ...] = ()
    fail_on: str | None = None
    attention: str | None = None


def write_reports(run: RunData, out_dir: Path) -> dict[str, Any]:
    """Write the Parquet tables, ``summary.json`` and ``report.html`` into ``out_dir``; return the summary."""
    from detector.report.html import render_html
    from detector.report.summary import build_summary

    for name, frame in run.tables.items():
        write_parquet(frame, out_dir / name, {**run.meta, contract.Meta.REPORT: name})
    summary = build_summary(run)
    (out_dir / contract.REPORT_HTML).write_text(render_html(summary), encoding="utf-8")
    (out_dir / contract.SUMMARY_JSON).write_text(
        json.dumps(summary, indent=2, default=str, sort_keys=False) + "\n", encoding="utf-8"
    )
    return summary
