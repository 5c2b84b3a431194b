"""Operator overrides of the plan: lift or extend one measure, with who and why, audited.

Overrides live in a TOML file (default ``/etc/detector/overrides.toml``; ``detector override``
writes it), one ``[[override]]`` table each::

    [[override]]
    measure = "M4a869d05f24c"      # a measure id of recommendations.parquet (stable across nights)
    action = "lift"                # lift: the measure is not enforced; extend: it holds until `until`
    until = 2026-12-10T00:00:00Z   # lift: until when (none: for good); extend: the new expiry
    by = "alice"
    why = "the clinic's NAT, ticket 4711"
    at = 2026-12-07T16:00:00Z      # when the override was made

Measure ids are a hash of the action, target and services, so an override made against tonight's
plan also holds for the same measure tomorrow. Every run (``detector run``) and every export
(``detector export``) applies them (:func:`apply_overrides`); the summary lists them (audit).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.errors import InputError
from detector.schema import UTC_US

DEFAULT_PATH = Path("/etc/detector/overrides.toml")
"""The overrides file every run and export reads when given none (if it exists)."""
ACTIONS = ("lift", "extend")
AUDIT_SCHEMA = pl.Schema(
    {
        "measure_id": pl.String,
        "override": pl.String,
        "until": UTC_US,
        "by": pl.String,
        "why": pl.String,
        "at": UTC_US,
        "matched": pl.Boolean,
        "action": pl.String,
        "target": pl.String,
    }
)
"""One row per override in force: what it did to this plan (``matched``: the measure is in it)."""


@dataclass(frozen=True)
class Override:
    measure: str
    action: str
    by: str
    why: str
    at: datetime
    until: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.until is None or self.until > now


def _utc(value: Any, where: str, path: Path) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InputError(f"{where} must be a date-time such as 2026-12-10T00:00:00Z", path=path)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_overrides(path: str | Path | None) -> list[Override]:
    """The overrides in ``path`` (``None``: :data:`DEFAULT_PATH` if it exists, else none).

    Raises:
        InputError: the file is missing (when named), not TOML, or an entry is invalid.
    """
    if path is None:
        if not DEFAULT_PATH.is_file():
            return []
        path = DEFAULT_PATH
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError("overrides file not found", path=p) from e
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the overrides: {e}", path=p) from e
    out = []
    for i, entry in enumerate(doc.get("override", []), start=1):
        where = f"override {i}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} is not a table", path=p)
        unknown = set(entry) - {"measure", "action", "until", "by", "why", "at"}
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", path=p)
        for key in ("measure", "action", "by", "why"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise InputError(
                    f"{where}: `{key}` must be a non-empty string (who and why are required)", path=p
                )
        if entry["action"] not in ACTIONS:
            raise InputError(f"{where}: action must be lift or extend, got {entry['action']!r}", path=p)
        until = _utc(entry.get("until"), f"{where}: until", p)
        if entry["action"] == "extend" and until is None:
            raise InputError(f"{where}: extend needs `until` (the new expiry)", path=p)
        at = _utc(entry.get("at"), f"{where}: at", p) or datetime.fromtimestamp(0, UTC)
        out.append(Override(entry["measure"], entry["action"], entry["by"], entry["why"], at, until))
    return out


def apply_overrides(
    plan: pl.DataFrame, overrides: list[Override], now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The plan with the overrides in force at ``now`` applied, and their audit (:data:`AUDIT_SCHEMA`).

    A lifted measure leaves the plan; an extended one gets ``expires_at = until``. The latest
    override of a measure wins.
    """
    live = sorted((o for o in overrides if o.in_force(now)), key=lambda o: o.at)
    latest = {o.measure: o for o in live}
    rows = list(latest.values())
    audit = pl.DataFrame(
        {
            "measure_id": [o.measure for o in rows],
            "override": [o.action for o in rows],
            "until": [o.until for o in rows],
            "by": [o.by for o in rows],
            "why": [o.why for o in rows],
            "at": [o.at for o in rows],
        },
        schema={k: AUDIT_SCHEMA[k] for k in ("measure_id", "override", "until", "by", "why", "at")},
    )
    found = plan.select("measure_id", "action", "target")
    audit = audit.join(found, on="measure_id", how="left").with_columns(
        pl.col("action").is_not_null().alias("matched")
    )
    lifted = [o.measure for o in rows if o.action == "lift"]
    extended = pl.DataFrame(
        {"measure_id": [o.measure for o in rows if o.action == "extend"],
         "_until": [o.until for o in rows if o.action == "extend"]},
        schema={"measure_id": pl.String, "_until": UTC_US},
    )  # fmt: skip
    out = (
        plan.filter(~pl.col("measure_id").is_in(lifted))
        .join(extended, on="measure_id", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_until", "expires_at").alias("expires_at"))
        .drop("_until")
    )
    return out.select(plan.columns), audit.select(AUDIT_SCHEMA.names())


def add_override(path: str | Path | None, override: Override) -> Path:
    """Append ``override`` to the overrides file (created if missing), atomically; return its path."""
    import tomli_w

    p = Path(path) if path is not None else DEFAULT_PATH
    entries = []
    if p.exists():
        read_overrides(p)  # refuse to append to a file that is already wrong
        entries = tomllib.loads(p.read_text(encoding="utf-8")).get("override", [])
    entry = {"measure": override.measure, "action": override.action, "by": override.by, "why": override.why,
             "at": override.at}  # fmt: skip
    if override.until is not None:
        entry["until"] = override.until
    entries.append(entry)
    text = "# detector overrides (detector override ...; see detector/recommend/overrides.py)\n"
    text += tomli_w.dumps({"override": entries})
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    except OSError as e:
        raise InputError(f"cannot write the overrides: {e.strerror}", path=p) from e
    return p
