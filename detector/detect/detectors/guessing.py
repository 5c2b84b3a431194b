"""Guessing sources: addresses (and their networks) that fail again and again and never get in.

Postfix logs most failed SASL logins without the name the client tried
(``warning: unknown[ADDR]: SASL LOGIN authentication failed: ...``): the account-keyed detectors
cannot see them, yet a source failing hundreds of times a day against a submission port and never
succeeding is the commonest attack such a server sees (fail2ban's ``postfix-sasl`` jail). This
detector judges the source, whatever the account (named, unknown or none).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from detector.detect.detectors.common import detector, first_campaign, ramp
from detector.detect.findings import evidence
from detector.errors import ConfigError, did_you_mean
from detector.features import BUCKET
from detector.features import expressions as x
from detector.schema import C

CA = "Credential Access"
NAME = "guessing_source"
_LEVEL_COL = {"source_ip": C.SOURCE_IP, "prefix": C.PREFIX, "asn": C.ASN}


@dataclass(frozen=True)
class GuessingParams:
    min_failures: int = 10
    """Failed attempts from the source (or, for a prefix or ASN, its guessing sources) in one window."""
    min_failures_input: int = 50
    """...or over the whole input (a slow guesser, below the threshold in every window; 0: off)."""
    min_sources_prefix: int = 2
    """A /24 (/64) finding needs this many failing sources in the window..."""
    min_sources_asn: int = 3
    """...an ASN finding this many (one source is already a source finding)."""
    levels: tuple[str, ...] = ("source_ip", "prefix", "asn")
    """Entities judged: source_ip, prefix, asn."""

    def __post_init__(self) -> None:
        unknown = [level for level in self.levels if level not in _LEVEL_COL]
        if unknown:
            raise ConfigError(
                f"[detectors.{NAME}] levels: unknown level {unknown[0]!r}",
                hint=did_you_mean(str(unknown[0]), _LEVEL_COL),
            )


def never_in(lf: pl.LazyFrame, col: str) -> pl.LazyFrame:
    """Values of ``col`` from which no login succeeded in the whole input, nor (for addresses and
    prefixes) in the history the enrichment counts (``ip_legit_accounts``, ``prefix_legit_accounts``)."""
    legit = {C.SOURCE_IP: C.IP_LEGIT_ACCOUNTS, C.PREFIX: C.PREFIX_LEGIT_ACCOUNTS}.get(col)
    known = pl.col(legit).fill_null(0).max() if legit else pl.lit(0)
    return (
        lf.filter(x.is_login() & pl.col(col).is_not_null())
        .group_by(col)
        .agg(pl.col("_ok").sum().alias("_ok_all"), known.alias("_known"))
        .filter((pl.col("_ok_all") == 0) & (pl.col("_known") == 0))
        .select(col)
    )


def _subscribers_in(lf: pl.LazyFrame) -> pl.LazyFrame:
    """IPv6 /64s from which a login succeeded (now or in the history): one subscriber whose
    address rotates (privacy extensions), so its other addresses are not judged alone."""
    v6 = pl.col(C.SOURCE_IP).str.contains(":", literal=True).fill_null(False)
    seen = lf.filter(x.is_login() & v6 & pl.col(C.PREFIX).is_not_null()).select(C.PREFIX).unique()
    return seen.join(never_in(lf, C.PREFIX), on=C.PREFIX, how="anti")


def _level(
    lf: pl.LazyFrame, level: str, p: GuessingParams, *, per_window: bool = True, campaign: bool = True
) -> pl.LazyFrame:
    """Findings of one level, per window (``per_window``) or over the whole input; ``campaign``:
    with the ``gs-`` campaign of the events (absent while the campaigns are being made)."""
    col = _LEVEL_COL[level]
    keys = [BUCKET, col] if per_window else [col]
    threshold = p.min_failures if per_window else p.min_failures_input
    window = pl.col(BUCKET).dt.strftime("%Y-%m-%dT%H:%MZ") if per_window else pl.lit("input")
    failed = lf.filter(x.is_failed() & pl.col(col).is_not_null() & pl.col(C.SOURCE_IP).is_not_null())
    # every level counts only sources that never got in; a prefix or ASN also must never have
    failed = failed.join(never_in(lf, C.SOURCE_IP), on=C.SOURCE_IP, how="semi")
    if level != "source_ip":
        failed = failed.join(never_in(lf, col), on=col, how="semi")
    else:
        failed = failed.join(_subscribers_in(lf), on=C.PREFIX, how="anti")
    min_sources = {"source_ip": 1, "prefix": p.min_sources_prefix, "asn": p.min_sources_asn}[level]
    entity = pl.col(col).cast(pl.String)
    return (
        failed.group_by(keys)
        .agg(
            pl.col("_fa").sum().alias("failures"),
            pl.col("_fa").filter(pl.col(C.ACCOUNT).is_null()).sum().alias("unnamed"),
            pl.col(C.ACCOUNT).drop_nulls().n_unique().alias("accounts"),
            pl.col(C.SOURCE_IP).n_unique().alias("sources"),
            pl.col(C.TIMESTAMP).min().alias("start"),
            pl.col(C.TIMESTAMP).max().alias("end"),
            pl.col(C.EVENT_ID).alias("event_ids"),
            first_campaign("gs-") if campaign else pl.lit(None, pl.String).alias(C.CAMPAIGN),
        )
        # one named account failing alone is brute_force's (or a stale password's) to judge
        .filter(
            (pl.col("failures") >= threshold)
            & (pl.col("sources") >= min_sources)
            & ((pl.col("unnamed") > 0) | (pl.col("accounts") >= 2))
        )
        .with_columns(
            pl.lit(level if per_window else f"{level}:input").alias("key"),
            pl.lit(level).alias("entity_type"),
            (pl.lit("AS") + entity if level == "asn" else entity).alias("entity"),
            ramp(pl.col("failures"), threshold, 10).alias("score"),
            evidence(
                level=pl.lit(level),
                failures=pl.col("failures"),
                unnamed_failures=pl.col("unnamed"),
                accounts=pl.col("accounts"),
                sources=pl.col("sources"),
                successes=pl.lit(0),
                window=window,
                min_failures=pl.lit(threshold),
            ).alias("evidence"),
        )
        .select("entity_type", "entity", "start", "end", "score", "evidence", "event_ids", C.CAMPAIGN, "key")
    )


def guessing_sources(lf: pl.LazyFrame, p: GuessingParams) -> pl.LazyFrame:
    """``source_ip`` of the sources judged on their own (per window or over the input): what the
    ``gs-`` campaigns group (``detector.detect.campaigns``)."""
    parts = [_level(lf, "source_ip", p, campaign=False)]
    if p.min_failures_input > 0:
        parts.append(_level(lf, "source_ip", p, per_window=False, campaign=False))
    return pl.concat(parts).select(pl.col("entity").alias(C.SOURCE_IP)).unique()


@detector(
    GuessingParams,
    name=NAME,
    scope="source",
    technique="T1110.001",
    tactic=CA,
    severity="high",
    kind="attack",
    description="A source (or several of one /24, /64 or ASN) failing many times in a window and never logging in, whatever the account: named, unknown or not logged at all (Postfix SASL failures).",
    false_positives="A device with a stale password on a network where nothing else logs in (a lone home line, a monitoring probe with an old secret); a misconfigured relay retrying AUTH.",
    triage="Confirm that no login ever succeeded from the address or its network (successes=0 in the evidence, legit_accounts=0 in sources.parquet); blocking it costs nothing when no legitimate user is behind it. For T1110.003 look at the accounts named, if any.",
    affected="Blocking the address or prefix hits only whoever logs in from it, and no login has succeeded from it; an AS block only where no user of that AS logs in.",
)
def guessing_source(lf: pl.LazyFrame, p: GuessingParams) -> pl.LazyFrame:
    levels = [level for level in p.levels if level in _LEVEL_COL]
    parts = [_level(lf, level, p) for level in levels]
    if p.min_failures_input > 0:
        # a source caught in a window is not reported again over the input
        caught = pl.concat(parts).select("entity_type", "entity").unique()
        slow = [_level(lf, level, p, per_window=False) for level in levels]
        parts.append(pl.concat(slow).join(caught, on=["entity_type", "entity"], how="anti"))
    return pl.concat(parts)
