"""Ground truth: the incidents file (``labels/incidents.csv``) and how it labels events.

One row per labelled fact, columns ``campaign, technique, source_ip, account, start, end,
compromised`` (see docs/labels.md). An event is an attack event when some row's non-empty fields
(``source_ip``, ``account``) all equal the event's and the event's timestamp lies in
``[start, end]`` (an empty bound is open). Where several rows match, the most specific wins: rows
naming both an address and an account, then ``compromised`` rows, then the earliest start.
Events without an address inherit the label of their session (same ``host`` and ``session_id``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import polars as pl

from detector.errors import InputError, ParseError, SchemaError, did_you_mean
from detector.schema import UTC_US, C, Column, dtypes

TECHNIQUES: dict[str, str] = {
    "credential_stuffing": "T1110.004",
    "password_spraying": "T1110.003",
    "brute_force": "T1110.001",
    "distributed_brute_force": "T1110.001",
    "account_takeover": "T1078",
}
"""Techniques a label row may name, with their MITRE ATT&CK ids."""

TECHNIQUE = "technique"
START = "start"
END = "end"
COMPROMISED = "compromised"
IS_ATTACK = "is_attack"
LABEL_CAMPAIGN = "label_campaign"
LABEL_TECHNIQUE = "label_technique"

LABEL_COLUMNS: tuple[Column, ...] = (
    Column(C.CAMPAIGN, pl.String, "Campaign id (free text, e.g. CS-1); rows of one campaign share it."),
    Column(
        TECHNIQUE,
        pl.String,
        "credential_stuffing, password_spraying, brute_force, distributed_brute_force or account_takeover.",
    ),
    Column(C.SOURCE_IP, pl.String, "Attacker address (canonical text); empty: any address."),
    Column(C.ACCOUNT, pl.String, "Account attacked or taken over (lower-cased); empty: any account."),
    Column(START, UTC_US, "First moment the row covers (ISO 8601; UTC if no offset; empty: unbounded)."),
    Column(END, UTC_US, "Last moment the row covers, inclusive (a date alone means the end of that day)."),
    Column(COMPROMISED, pl.Boolean, "The attacker held the account's password (account_takeover rows)."),
)
LABEL_SCHEMA = pl.Schema(dtypes(LABEL_COLUMNS))

LABELLED_COLUMNS: tuple[Column, ...] = (
    Column(IS_ATTACK, pl.Boolean, "Some label row matches the event."),
    Column(LABEL_CAMPAIGN, pl.String, "Campaign of the matching row (null when not an attack)."),
    Column(LABEL_TECHNIQUE, pl.String, "Technique of the matching row (null when not an attack)."),
)

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


class LabelError(ParseError):
    """An incidents file that cannot be read as labels."""


def _canonical_ip(text: str) -> str:
    addr = ipaddress.ip_address(text.strip())
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _parse_time(col: str, *, end: bool) -> pl.Expr:
    """ISO 8601 text to UTC microseconds: ``Z`` or an offset, or none (UTC); a date alone is a whole day."""
    text = pl.col(col).str.strip_chars()
    date_only = text.str.contains(r"^\d{4}-\d{2}-\d{2}$")
    full = (
        text.str.replace(r"^(\d{4}-\d{2}-\d{2})[ T]", "${1}T")
        .str.replace(r"[zZ]$", "+00:00")
        .str.replace(r"([+-]\d{2})(\d{2})$", "${1}:${2}")
    )
    full = pl.when(full.str.contains(r"[+-]\d{2}:\d{2}$")).then(full).otherwise(full + "+00:00")
    stamp = full.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC", strict=False)
    day = text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if end:
        day = day + pl.duration(days=1) - pl.duration(microseconds=1)
    return pl.when(date_only).then(day).otherwise(stamp)


def _fail(path: str, line: int, message: str, hint: str | None = None) -> LabelError:
    return LabelError(message, path=path, line=line, hint=hint)


def read_labels(path: str | Path) -> pl.DataFrame:
    """Read and validate an incidents CSV; errors name ``path:line`` (the header is line 1).

    Returns a frame with :data:`LABEL_SCHEMA`: accounts lower-cased, addresses canonical,
    timestamps UTC, ``compromised`` boolean.
    """
    where = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError("labels file does not exist", path=where)
    try:
        raw = pl.read_csv(p, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as e:
        raise LabelError(f"cannot read labels: {e}", path=where) from e
    names = list(LABEL_SCHEMA.names())
    for name in names:
        if name not in raw.columns and name != COMPROMISED:
            raise SchemaError(
                f"labels lack column {name!r}", path=where, line=1, hint=did_you_mean(name, raw.columns)
            )
    unknown = [c for c in raw.columns if c not in names]
    if unknown:
        raise SchemaError(
            f"labels have unknown column {unknown[0]!r}",
            path=where,
            line=1,
            hint=did_you_mean(unknown[0], names),
        )
    if COMPROMISED not in raw.columns:
        raw = raw.with_columns(pl.lit("").alias(COMPROMISED))
    frame = raw.with_row_index("_line", offset=2).with_columns(
        pl.col(c).fill_null("").str.strip_chars() for c in names
    )

    def first_bad(mask: pl.Expr) -> dict | None:
        bad = frame.filter(mask)
        return bad.row(0, named=True) if bad.height else None

    if (row := first_bad(pl.col(C.CAMPAIGN) == "")) is not None:
        raise _fail(where, row["_line"], "empty campaign")
    if (row := first_bad(~pl.col(TECHNIQUE).is_in(list(TECHNIQUES)))) is not None:
        raise _fail(
            where,
            row["_line"],
            f"unknown technique {row[TECHNIQUE]!r} (one of {', '.join(TECHNIQUES)})",
            did_you_mean(row[TECHNIQUE], TECHNIQUES),
        )
    if (row := first_bad((pl.col(C.SOURCE_IP) == "") & (pl.col(C.ACCOUNT) == ""))) is not None:
        raise _fail(where, row["_line"], "a row needs a source_ip, an account, or both")
    if (row := first_bad(~pl.col(COMPROMISED).str.to_lowercase().is_in([*_TRUE, *_FALSE]))) is not None:
        raise _fail(where, row["_line"], f"compromised must be true or false, got {row[COMPROMISED]!r}")
    for col, is_end in ((START, False), (END, True)):
        parsed = frame.select(_parse_time(col, end=is_end).alias("t"))["t"]
        bad = frame.filter(parsed.is_null() & (frame[col] != ""))
        if bad.height:
            row = bad.row(0, named=True)
            raise _fail(
                where, row["_line"], f"{col} {row[col]!r} is not an ISO 8601 time (e.g. 2026-11-16T03:14:15Z)"
            )
        frame = frame.with_columns(parsed.alias(f"_{col}"))
    if (row := first_bad(pl.col(f"_{START}") > pl.col(f"_{END}"))) is not None:
        raise _fail(where, row["_line"], f"start {row[START]!r} is after end {row[END]!r}")
    ips = []
    for line, text in zip(frame["_line"], frame[C.SOURCE_IP], strict=True):
        try:
            ips.append(_canonical_ip(text) if text else None)
        except ValueError:
            raise _fail(where, line, f"source_ip {text!r} is not an IP address") from None
    return frame.select(
        pl.col(C.CAMPAIGN),
        pl.col(TECHNIQUE),
        pl.Series(C.SOURCE_IP, ips, dtype=pl.String),
        pl.when(pl.col(C.ACCOUNT) != "").then(pl.col(C.ACCOUNT).str.to_lowercase()).alias(C.ACCOUNT),
        pl.col(f"_{START}").alias(START),
        pl.col(f"_{END}").alias(END),
        pl.col(COMPROMISED).str.to_lowercase().is_in(list(_TRUE)).alias(COMPROMISED),
    )


def _as_labels(labels: pl.DataFrame | str | Path) -> pl.DataFrame:
    if isinstance(labels, str | Path):
        return read_labels(labels)
    missing = [n for n in LABEL_SCHEMA.names() if n not in labels.columns]
    if missing:
        raise SchemaError(
            f"labels frame lacks column {missing[0]!r}", hint=did_you_mean(missing[0], labels.columns)
        )
    return labels.select([pl.col(n).cast(t) for n, t in LABEL_SCHEMA.items()])


def label_events(events: pl.LazyFrame, labels: pl.DataFrame | str | Path) -> pl.LazyFrame:
    """Add ``is_attack``, ``label_campaign`` and ``label_technique`` to every event (row order kept).

    ``events`` needs ``timestamp``, ``source_ip`` and ``account``. Three equi-joins (address only,
    account only, both) instead of a cross product, so it scales with events x matching rows. Where
    ``host`` and ``session_id`` exist, an event without an address (a session end) takes the label
    of the addressed events of its session.
    """
    rules = _as_labels(labels).with_row_index("_rule")
    lf = events.lazy()
    have = lf.collect_schema()
    for name in (C.TIMESTAMP, C.SOURCE_IP, C.ACCOUNT):
        if name not in have:
            raise SchemaError(f"events lack column {name!r}", hint=did_you_mean(name, have.names()))
    base = lf.with_row_index("_event").select(
        "_event",
        pl.col(C.TIMESTAMP).cast(UTC_US).alias("_ts"),
        pl.col(C.SOURCE_IP).alias("_ip"),
        pl.col(C.ACCOUNT).str.to_lowercase().alias("_acct"),
    )
    rules = rules.with_columns(
        _rank=pl.when(pl.col(C.SOURCE_IP).is_not_null() & pl.col(C.ACCOUNT).is_not_null())
        .then(0)
        .otherwise(1),
        _ip=pl.col(C.SOURCE_IP),
        _acct=pl.col(C.ACCOUNT),
    ).lazy()
    kinds = (
        (pl.col(C.SOURCE_IP).is_not_null() & pl.col(C.ACCOUNT).is_null(), ["_ip"]),
        (pl.col(C.SOURCE_IP).is_null() & pl.col(C.ACCOUNT).is_not_null(), ["_acct"]),
        (pl.col(C.SOURCE_IP).is_not_null() & pl.col(C.ACCOUNT).is_not_null(), ["_ip", "_acct"]),
    )
    in_window = (pl.col(START).is_null() | (pl.col("_ts") >= pl.col(START))) & (
        pl.col(END).is_null() | (pl.col("_ts") <= pl.col(END))
    )
    matches = pl.concat(
        [
            base.join(
                rules.filter(which).select(
                    "_rule", "_rank", *keys, START, END, COMPROMISED, C.CAMPAIGN, TECHNIQUE
                ),
                on=keys,
            )
            .filter(in_window)
            .select("_event", "_rule", "_rank", COMPROMISED, START, C.CAMPAIGN, TECHNIQUE)
            for which, keys in kinds
        ]
    )
    best = (
        matches.sort(
            ["_event", "_rank", COMPROMISED, START, "_rule"],
            descending=[False, False, True, False, False],
            nulls_last=True,
        )
        .group_by("_event", maintain_order=True)
        .first()
        .select("_event", pl.col(C.CAMPAIGN).alias(LABEL_CAMPAIGN), pl.col(TECHNIQUE).alias(LABEL_TECHNIQUE))
    )
    out = lf.with_row_index("_event").join(best, on="_event", how="left", maintain_order="left")
    if C.SESSION_ID in have and C.HOST in have:
        out = _inherit_from_session(out)
    return out.with_columns(pl.col(LABEL_TECHNIQUE).is_not_null().alias(IS_ATTACK)).drop("_event")


def _inherit_from_session(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Events without an address (a Dovecot session end) take the label of their session's login."""
    key = [C.HOST, C.SESSION_ID]
    sessions = (
        lf.filter(
            pl.col(C.SOURCE_IP).is_not_null()
            & pl.col(C.SESSION_ID).is_not_null()
            & pl.col(LABEL_TECHNIQUE).is_not_null()
        )
        .group_by(key)
        .agg(pl.col(LABEL_CAMPAIGN).first().alias("_camp"), pl.col(LABEL_TECHNIQUE).first().alias("_tech"))
    )
    orphan = pl.col(C.SOURCE_IP).is_null() & pl.col(LABEL_TECHNIQUE).is_null()
    return (
        lf.join(sessions, on=key, how="left", maintain_order="left")
        .with_columns(
            pl.when(orphan).then(pl.col("_camp")).otherwise(pl.col(LABEL_CAMPAIGN)).alias(LABEL_CAMPAIGN),
            pl.when(orphan).then(pl.col("_tech")).otherwise(pl.col(LABEL_TECHNIQUE)).alias(LABEL_TECHNIQUE),
        )
        .drop("_camp", "_tech")
    )


def compromised_accounts(labels: pl.DataFrame | str | Path) -> set[str]:
    """Accounts some row marks ``compromised``."""
    frame = _as_labels(labels)
    return set(frame.filter(pl.col(COMPROMISED) & pl.col(C.ACCOUNT).is_not_null())[C.ACCOUNT].to_list())


def attack_sources(labels: pl.DataFrame | str | Path) -> pl.DataFrame:
    """One row per labelled source address and campaign/technique.

    Columns: ``source_ip``, ``campaign``, ``technique``, ``exclusive`` (the attacker's own address:
    the row has no account; false for shared exits where only given accounts are attack traffic),
    ``accounts`` (list of those accounts), ``start``, ``end``.
    """
    frame = _as_labels(labels).filter(pl.col(C.SOURCE_IP).is_not_null())
    return (
        frame.group_by(C.SOURCE_IP, C.CAMPAIGN, TECHNIQUE)
        .agg(
            pl.col(C.ACCOUNT).is_null().any().alias("exclusive"),
            pl.col(C.ACCOUNT).drop_nulls().unique().sort().alias("accounts"),
            pl.col(START).min(),
            pl.col(END).max(),
        )
        .sort(C.SOURCE_IP, C.CAMPAIGN, TECHNIQUE)
    )


__all__ = [
    "IS_ATTACK",
    "LABEL_CAMPAIGN",
    "LABEL_COLUMNS",
    "LABEL_SCHEMA",
    "LABEL_TECHNIQUE",
    "TECHNIQUES",
    "LabelError",
    "attack_sources",
    "compromised_accounts",
    "label_events",
    "read_labels",
]
