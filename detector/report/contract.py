"""The report contract: which files a run publishes, their columns and their metadata keys.

Column names and types come from :mod:`detector.schema` (and, for findings, from the detection
stage); this module only says which table goes into which file. Tests check every written file
against it and check that ``docs/reports.md`` documents every column and metadata key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from detector import schema
from detector.parquet_meta import META_PREFIX as META_PREFIX
from detector.schema import Column

REPORT_VERSION = "1"
"""Version of the report contract: bumped when a column is removed, renamed or retyped."""


class Meta:
    """Key-value metadata keys carried by every Parquet report (prefixed with ``detector.``)."""

    TOOL_VERSION = "tool_version"
    REPORT_VERSION = "report_version"
    SCHEMA_VERSION = "schema_version"
    REPORT = "report"
    RUN_ID = "run_id"
    CREATED_AT = "created_at"
    INPUTS = "inputs"
    WINDOW_START = "window_start"
    WINDOW_END = "window_end"
    MODEL_ID = "model_id"
    MODEL_CARD_SHA256 = "model_card_sha256"
    GEOIP = "geoip"
    CONFIG_SHA256 = "config_sha256"
    PSEUDONYMIZED = "pseudonymized"
    ALL = (
        TOOL_VERSION,
        REPORT_VERSION,
        SCHEMA_VERSION,
        REPORT,
        RUN_ID,
        CREATED_AT,
        INPUTS,
        WINDOW_START,
        WINDOW_END,
        MODEL_ID,
        MODEL_CARD_SHA256,
        GEOIP,
        CONFIG_SHA256,
        PSEUDONYMIZED,
    )


def _events() -> tuple[Column, ...]:
    return schema.EVENT_COLUMNS + schema.ENRICH_COLUMNS + schema.SCORE_COLUMNS


def _findings() -> tuple[Column, ...]:
    from detector.detect.findings import FINDING_COLUMNS

    return FINDING_COLUMNS


def _collateral() -> tuple[Column, ...]:
    from detector.recommend.plan import COLLATERAL_COLUMNS

    return COLLATERAL_COLUMNS


def _campaigns() -> tuple[Column, ...]:
    from detector.detect.campaigns import CAMPAIGN_HISTORY_COLUMNS
    from detector.detect.findings import CAMPAIGN_COLUMNS

    return (*CAMPAIGN_COLUMNS, *CAMPAIGN_HISTORY_COLUMNS)


@dataclass(frozen=True)
class ReportFile:
    name: str
    """File name inside the output directory."""
    columns: Callable[[], tuple[Column, ...]]
    doc: str
    account_columns: tuple[str, ...] = ()
    """Columns holding account names (pseudonymised with ``--pseudonymize``)."""

    def schema(self) -> pl.Schema:
        return pl.Schema(schema.dtypes(self.columns()))


PARQUET_REPORTS: tuple[ReportFile, ...] = (
    ReportFile("events.parquet", _events, "The enriched, scored events.", (schema.C.ACCOUNT,)),
    ReportFile(
        "accounts.parquet", lambda: schema.ACCOUNT_COLUMNS, "One row per account seen.", (schema.C.ACCOUNT,)
    ),
    ReportFile("sources.parquet", lambda: schema.SOURCE_COLUMNS, "One row per source address."),
    ReportFile(
        "recommendations.parquet",
        lambda: schema.RECOMMENDATION_COLUMNS,
        "The response plan: one row per measure.",
    ),
    ReportFile(
        "collateral.parquet",
        _collateral,
        "Who each measure hits: one row per measure and account counted in its collateral_accounts.",
        (schema.C.ACCOUNT,),
    ),
    ReportFile("findings.parquet", _findings, "One row per detector finding."),
    ReportFile("campaigns.parquet", _campaigns, "One row per campaign."),
    ReportFile(
        "quarantine.parquet",
        lambda: schema.QUARANTINE_COLUMNS,
        "Every line that could not be read as an event, with file, line number and reason.",
    ),
)

SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
ALL_FILES: tuple[str, ...] = (*(r.name for r in PARQUET_REPORTS), REPORT_HTML, SUMMARY_JSON)
"""Every published file, in publishing order (summary.json last: it marks a complete run)."""

BY_NAME = {r.name: r for r in PARQUET_REPORTS}


def type_name(dtype: pl.DataType) -> str:
    """A short, engine-neutral name of a column type (``timestamp[us, UTC]``, ``list<string>``)."""
    if isinstance(dtype, pl.Datetime):
        return f"timestamp[{dtype.time_unit}, {dtype.time_zone or 'naive'}]"
    if isinstance(dtype, pl.List):
        return f"list<{type_name(dtype.inner)}>"
    return {pl.String: "string", pl.Boolean: "bool"}.get(dtype, str(dtype).lower())


def markdown_tables() -> str:
    """The column tables of every Parquet report, as Markdown (pasted into docs/reports.md)."""
    out = []
    for r in PARQUET_REPORTS:
        out.append(f"### `{r.name}`\n\n{r.doc}\n\n| column | type | meaning |\n|---|---|---|")
        out.extend(f"| `{c.name}` | `{type_name(c.dtype)}` | {c.doc} |" for c in r.columns())
        out.append("")
    return "\n".join(out)
