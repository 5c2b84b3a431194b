"""Enrichment: GeoIP, ASN and anonymiser flags, prefixes, the practitioner directory, shared addresses.

Every part is a join of the events against a small table (one row per distinct address, per
account of the directory, per shared address or prefix), so the stage runs per shard: the only
global input is the shared-address counts, which a sharded run computes once over all events
(:func:`shared_address_counts`) and passes in as ``history_shared``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from detector.config import EnrichConfig
from detector.enrich.geoip import (
    ADDRESS_SCHEMA,
    GeoIPDatabases,
    find_databases,
    lookup_addresses,
)
from detector.enrich.practitioners import add_practitioner_columns, load_practitioners, normalise
from detector.enrich.shared import (
    SHARED_SCHEMA,
    add_shared_columns,
    collect_pairs,
    counts_from_pairs,
    merge_shared,
    shared_address_counts,
)
from detector.schema import ENRICH_COLUMNS, EVENT_SCHEMA, C, check

__all__ = [
    "ADDRESS_SCHEMA",
    "SHARED_SCHEMA",
    "EnrichResult",
    "GeoIPDatabases",
    "enrich",
    "find_databases",
    "load_practitioners",
    "lookup_addresses",
    "merge_shared",
    "merge_shared_counts",
    "shared_address_counts",
]

merge_shared_counts = merge_shared
"""Alias of :func:`merge_shared` (``merge_shared_counts(previous_or_None, tonight)``)."""

STALE_DAYS = 60
"""A database built more than this many days before the newest event gives a warning."""
_NEEDED = (C.TIMESTAMP, C.ACTION, C.OUTCOME, C.ACCOUNT, C.SOURCE_IP)
_KIND_COLUMNS = {
    "city": "country, city, latitude, longitude",
    "asn": "asn, as_org",
    "anonymous_ip": "is_vpn, is_tor (is_hosting only from enrich.hosting_asns)",
}
_KIND_NAMES = {
    "city": "City/Country",
    "asn": "ASN",
    "anonymous_ip": "Anonymous-IP",
}


@dataclass(frozen=True)
class EnrichResult:
    """Enriched events (lazy) and what the run should record about the enrichment.

    Attributes:
        events: The input columns followed by every column of ``schema.ENRICH_COLUMNS``.
        metadata: Databases (type, build date), address and directory counts, timings.
        warnings: Missing databases, duplicate directory entries.
        addresses: One row per distinct source address (:data:`ADDRESS_SCHEMA`).
        shared: Shared-address counts used (tonight merged with ``history_shared``): the
            table to save in the state for the next night.
    """

    events: pl.LazyFrame
    metadata: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    addresses: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ADDRESS_SCHEMA))
    shared: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SHARED_SCHEMA))


NO_DIRECTORY = (
    "no practitioner directory (--practitioners): no account is known to belong to a health "
    "professional, so practitioners get no priority and are not counted apart in the collateral"
)
"""The warning of every command that enriches without a practitioner directory."""


def _geoip_warnings(geoip: GeoIPDatabases | None) -> list[str]:
    if geoip is None or len(geoip.missing) == len(_KIND_COLUMNS):
        where = f" (searched {', '.join(geoip.searched)})" if geoip is not None and geoip.searched else ""
        return [
            f"no GeoIP databases found{where}: country, city, latitude, longitude, asn, as_org, "
            "is_vpn and is_tor are empty; give --geoip-dir or set DETECTOR_GEOIP_DIR"
        ]
    return [
        f"no GeoIP {_KIND_NAMES[kind]} database in {', '.join(geoip.searched)}: {_KIND_COLUMNS[kind]} are empty"
        for kind in geoip.missing
    ]


def _stale_warnings(geoip: GeoIPDatabases | None, newest: datetime | None) -> list[str]:
    """Databases built long before the newest event describe an older Internet."""
    if geoip is None or newest is None:
        return []
    out = []
    for kind in _KIND_NAMES:
        db = geoip.get(kind)
        if db is None:
            continue
        age = (newest - datetime.fromtimestamp(db.build_epoch, UTC)).days
        if age > STALE_DAYS:
            out.append(
                f"GeoIP {_KIND_NAMES[kind]} database {db.path.name} was built on {db.build_date}, "
                f"{age} days before the newest event: addresses may have moved (update it)"
            )
    return out


def _address_metadata(addresses: pl.DataFrame) -> dict[str, int]:
    row = addresses.select(
        pl.len().alias("distinct"),
        pl.col(C.IS_PRIVATE).sum().alias("private"),
        pl.col(C.PREFIX).is_null().sum().alias("invalid"),
        pl.col(C.COUNTRY).is_not_null().sum().alias("with_country"),
        pl.col(C.ASN).is_not_null().sum().alias("with_asn"),
        pl.col(C.IS_HOSTING).sum().alias("hosting"),
        pl.col(C.IS_VPN).sum().alias("vpn"),
        pl.col(C.IS_TOR).sum().alias("tor"),
    ).row(0, named=True)
    return {k: int(v or 0) for k, v in row.items()}


def enrich(
    events: pl.LazyFrame | pl.DataFrame,
    *,
    geoip: GeoIPDatabases | None,
    practitioners: pl.DataFrame | None,
    history_shared: pl.DataFrame | None = None,
    cfg: EnrichConfig | None = None,
) -> EnrichResult:
    """Add ``schema.ENRICH_COLUMNS`` to ``events``.

    Two passes over the events are collected together (distinct addresses; distinct successful
    (address, account) pairs); every distinct public address is looked up once; the rest is lazy
    joins.

    Args:
        events: Events with at least timestamp, action, outcome, account and source_ip.
        geoip: Databases from :func:`find_databases`; ``None`` or missing ones give a warning
            and null columns.
        practitioners: The directory (:func:`load_practitioners`); ``None``: nobody is one.
        history_shared: Shared-address counts from previous nights (or, in a sharded run, from
            all shards), merged with tonight's by maximum.
        cfg: ``[enrich]`` configuration (``hosting_asns``).

    Raises:
        SchemaError: the events lack a needed column.
        EnrichmentError: a database is corrupt, or the directory lacks an account column.
    """
    cfg = cfg or EnrichConfig()
    lf = events.lazy()
    have = lf.collect_schema()
    check(have, pl.Schema({c: EVENT_SCHEMA[c] for c in _NEEDED}), what="events")
    enrich_names = [c.name for c in ENRICH_COLUMNS]
    lf = lf.drop([c for c in enrich_names if c in have])
    warnings = _geoip_warnings(geoip)

    started = time.perf_counter()
    # streamed: the distinct addresses and pairs in memory, not five columns of every event
    distinct, stats = pl.collect_all(
        [
            lf.select(pl.col(C.SOURCE_IP)).drop_nulls().unique(),
            lf.select(pl.col(C.TIMESTAMP).max().alias("newest"), pl.len().alias("n")),
        ],
        engine="streaming",
    )
    pairs = collect_pairs(lf, int(stats.item(0, "n")))
    newest = stats.select("newest")
    scanned = time.perf_counter()
    warnings += _stale_warnings(geoip, newest.item())
    addresses = lookup_addresses(distinct.get_column(C.SOURCE_IP), geoip, hosting_asns=cfg.hosting_asns)
    looked_up = time.perf_counter()
    tonight = counts_from_pairs(pairs, addresses)
    shared = merge_shared(tonight, history_shared) if history_shared is not None else tonight

    directory = None
    if practitioners is not None:
        directory = normalise(practitioners).unique(C.ACCOUNT, keep="first", maintain_order=True)
        if directory.height != practitioners.height:
            warnings.append(
                f"{practitioners.height - directory.height} duplicate account entries in the practitioner "
                "directory; the first entry of each account is used"
            )

    # Shared counts are per address too (the prefix is a function of the address): one join.
    per_address = add_shared_columns(addresses.lazy(), shared).collect()
    out = lf.join(per_address.lazy(), on=C.SOURCE_IP, how="left", maintain_order="left")
    out = add_practitioner_columns(out, directory)
    kept = [c for c in have.names() if c not in enrich_names]
    out = out.select([*kept, *(pl.col(c.name).cast(c.dtype) for c in ENRICH_COLUMNS)])

    metadata = {
        "geoip": (geoip or GeoIPDatabases()).metadata(),
        "hosting_asns": list(cfg.hosting_asns),
        "addresses": _address_metadata(addresses),
        "practitioners": None
        if directory is None
        else {"accounts": directory.height, "columns": directory.columns},
        "shared": {
            "tonight_keys": tonight.height,
            "history_keys": 0 if history_shared is None else history_shared.height,
            "merged_keys": shared.height,
        },
        "seconds": {
            "scan": round(scanned - started, 4),
            "lookup": round(looked_up - scanned, 4),
            "tables": round(time.perf_counter() - looked_up, 4),
        },
    }
    return EnrichResult(events=out, metadata=metadata, warnings=warnings, addresses=addresses, shared=shared)
