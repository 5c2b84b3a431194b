"""Hand-made enriched event frames for tests (detectors, scoring): a row is a dict of overrides.

``t`` is seconds after ``BASE`` (2026-11-20 00:00 UTC); missing enrichment columns are filled with
plausible defaults so that a five-row frame is a valid input to :func:`detector.detect.detect`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from detector.schema import ENRICHED_SCHEMA, C

BASE = datetime(2026, 11, 20, tzinfo=UTC)

DEFAULTS: dict[str, Any] = {
    C.HOST: "mx1",
    C.DAEMON: "dovecot",
    C.SERVICE: "imap",
    C.ACTION: "login",
    C.OUTCOME: "success",
    C.ACCOUNT: "alice@example.org",
    C.SOURCE_IP: "192.0.2.10",
    C.AUTH_METHOD: "PLAIN",
    C.TLS: True,
    C.ATTEMPTS: 1,
    C.SOURCE_FILE: "test.log",
    C.COUNTRY: "FR",
    C.CITY: "Paris",
    C.LATITUDE: 48.85,
    C.LONGITUDE: 2.35,
    C.ASN: 3215,
    C.AS_ORG: "Orange",
    C.IS_HOSTING: False,
    C.IS_VPN: False,
    C.IS_TOR: False,
    C.IS_PRIVATE: False,
    C.IS_PRACTITIONER: False,
    C.IP_LEGIT_ACCOUNTS: 1,
    C.PREFIX_LEGIT_ACCOUNTS: 1,
}


def _prefix(ip: str | None) -> str | None:
    if ip is None:
        return None
    if ":" in ip:
        return ":".join(ip.split(":")[:4]) + "::/64"
    return ".".join(ip.split(".")[:3]) + ".0/24"


def make_events(rows: list[dict[str, Any]], **defaults: Any) -> pl.LazyFrame:
    """An enriched-events LazyFrame from row dicts (``t`` seconds; other keys are column names)."""
    base = {**DEFAULTS, **defaults}
    out = []
    for i, row in enumerate(rows, start=1):
        r = {**base, **row}
        t = r.pop("t", i)
        r[C.TIMESTAMP] = BASE + timedelta(seconds=t)
        r.setdefault(C.LINE_NUMBER, i)
        if r.get(C.ACTION) != "login":
            r.setdefault(C.OUTCOME, None)
            if r.get(C.OUTCOME) == "success" and "outcome" not in row:
                r[C.OUTCOME] = None
        r.setdefault(C.PREFIX, _prefix(r.get(C.SOURCE_IP)))
        out.append(r)
    df = pl.DataFrame(
        out, schema_overrides={k: v for k, v in ENRICHED_SCHEMA.items() if k in out[0]}, strict=False
    )
    have = df.columns
    return df.lazy().select(
        [(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n) for n, t in ENRICHED_SCHEMA.items()]
    )
