"""Tiny hand-made frames in the schemas the response plan reads (shared by the recommend tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from detector.schema import ACCOUNT_SCHEMA, SOURCE_SCHEMA, UTC_US, C

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)


def prefix(ip: str) -> str:
    import ipaddress

    a = ipaddress.ip_address(ip)
    return str(ipaddress.ip_network((ip, 24 if a.version == 4 else 64), strict=False))


def prefix48(ip: str) -> str | None:
    import ipaddress

    a = ipaddress.ip_address(ip)
    return None if a.version == 4 else str(ipaddress.ip_network((ip, 48), strict=False))


def ev(
    ip: str,
    account: str,
    outcome: str = "failure",
    *,
    asn: int = 64500,
    service: str = "imap",
    minute: float = 0,
    practitioner: bool = False,
    risk: float | None = None,
    is_attack: bool | None = None,
    campaign: str | None = None,
    techniques: list[str] | None = None,
) -> dict:
    return {
        C.TIMESTAMP: T0 + timedelta(minutes=minute),
        C.ACCOUNT: account,
        C.SOURCE_IP: ip,
        C.PREFIX: prefix(ip),
        C.PREFIX48: prefix48(ip),
        C.ASN: asn,
        C.AS_ORG: f"org{asn}",
        C.SERVICE: service,
        C.ACTION: "login",
        C.OUTCOME: outcome,
        C.IS_PRACTITIONER: practitioner,
        C.IS_PRIVATE: False,
        C.RISK_SCORE: risk if risk is not None else (0.9 if outcome != "success" else 0.05),
        C.TECHNIQUES: techniques
        if techniques is not None
        else (["T1110.003"] if outcome != "success" else []),
        C.CAMPAIGN: campaign,
        "is_attack": is_attack,
    }


EVENT_DTYPES = {
    C.TIMESTAMP: UTC_US,
    C.ACCOUNT: pl.String,
    C.SOURCE_IP: pl.String,
    C.PREFIX: pl.String,
    C.PREFIX48: pl.String,
    C.ASN: pl.Int64,
    C.AS_ORG: pl.String,
    C.SERVICE: pl.String,
    C.ACTION: pl.String,
    C.OUTCOME: pl.String,
    C.IS_PRACTITIONER: pl.Boolean,
    C.IS_PRIVATE: pl.Boolean,
    C.RISK_SCORE: pl.Float64,
    C.TECHNIQUES: pl.List(pl.String),
    C.CAMPAIGN: pl.String,
    "is_attack": pl.Boolean,
}


def events(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=EVENT_DTYPES)


def sources(rows: list[dict]) -> pl.DataFrame:
    base = {
        "shared_address": False,
        "legit_accounts": 0,
        "attempts": 10,
        "failures": 10,
        "successes": 0,
        "accounts_targeted": 5,
        C.CAMPAIGN: None,
        C.ASN: 64500,
        C.AS_ORG: "org",
        C.COUNTRY: "XX",
        C.RISK_SCORE: 0.95,
        "verdict": "malicious",
    }
    out = []
    for r in rows:
        d = {**base, **r}
        d.setdefault(C.PREFIX, prefix(d[C.SOURCE_IP]))
        out.append(d)
    return pl.DataFrame(out, schema=SOURCE_SCHEMA) if out else pl.DataFrame(schema=SOURCE_SCHEMA)


def accounts(rows: list[dict]) -> pl.DataFrame:
    base = {
        C.IS_PRACTITIONER: False,
        C.PROFESSION: None,
        C.RISK_SCORE: 0.0,
        "verdict": "clean",
        "reasons": [],
        C.TECHNIQUES: [],
        "attempts": 1,
        "failures": 0,
        "successes": 1,
        "distinct_sources": 1,
        "countries": ["FR"],
        "first_seen": T0,
        "last_seen": T0,
    }
    out = [{**base, **r} for r in rows]
    return pl.DataFrame(out, schema=ACCOUNT_SCHEMA) if out else pl.DataFrame(schema=ACCOUNT_SCHEMA)


@dataclass
class Scores:
    events: pl.DataFrame
    accounts: pl.DataFrame
    sources: pl.DataFrame


@dataclass
class Detection:
    findings: pl.DataFrame | None = None
    campaigns: pl.DataFrame | None = None
    events: pl.DataFrame | None = field(default=None)


def world(ev_rows: list[dict], src_rows: list[dict], acc_rows: list[dict] | None = None) -> Scores:
    e = events(ev_rows)
    if acc_rows is None:
        acc_rows = [{C.ACCOUNT: a} for a in e.get_column(C.ACCOUNT).unique().sort().to_list()]
    return Scores(events=e, accounts=accounts(acc_rows), sources=sources(src_rows))


def light_world(practitioner: bool = False) -> tuple[list[dict], list[dict]]:
    """An account on an attacker's list (one SMTP failure from 203.0.113.5) with a success from its
    own line, beside another account's success from a second AS: the light restriction's world."""
    rows = [
        ev("198.51.100.9", "u0", "success", asn=64600, practitioner=practitioner),
        ev("192.0.2.20", "v0", "success", asn=64601),
        ev("203.0.113.5", "u0", service="smtp", practitioner=practitioner),
    ]
    return rows, [{C.SOURCE_IP: "203.0.113.5"}]
