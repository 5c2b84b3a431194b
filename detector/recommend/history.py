"""The networks accounts used on earlier nights (the baseline history) as legitimate logins the
plan counts in collateral and ``allowed_networks``."""

from __future__ import annotations

from typing import Any

import polars as pl

from detector.recommend import scope
from detector.schema import C


def _anonymous_history_as_prefixes(
    history: pl.DataFrame, tonight: pl.DataFrame, anonymous_asns: list[int]
) -> pl.DataFrame:
    """History rows on hosting/VPN/Tor AS numbers keep their address and prefix but not their AS,
    unless the account logs in legitimately from that AS tonight too.

    An attacker's logins into an account the scoring missed enter the history as the account's
    own; on anonymous infrastructure they would protect the whole AS from a block (a takeover
    rotates through hosting, VPN and Tor exits). Servers and VPN customers log in every night,
    so they still count; the prefix and address keep protecting the others.
    """
    seen = tonight.select(C.ACCOUNT, C.ASN).drop_nulls().unique().with_columns(pl.lit(True).alias("_tonight"))
    return (
        history.join(seen, on=[C.ACCOUNT, C.ASN], how="left")
        .with_columns(
            pl.when(pl.col(C.ASN).is_in(anonymous_asns) & pl.col("_tonight").is_null())
            .then(pl.lit(None, pl.Int64))
            .otherwise(pl.col(C.ASN))
            .alias(C.ASN)
        )
        .drop("_tonight")
        .filter(pl.any_horizontal(pl.col(C.PREFIX, C.PREFIX48, C.ASN).is_not_null()))
    )


def known_networks(history: Any) -> pl.DataFrame:
    """``account``, ``net`` (address, CIDR or ``AS<n>``) from the baseline history's successful logins.

    Pass the result as ``recommend(..., known_networks=...)`` so that collateral and restrictions
    count the networks accounts used on earlier nights. Accepts a ``History`` or its ``accounts``
    table (features ``source_ip``, ``prefix`` and ``asn``).
    """
    table = getattr(history, "accounts", history)
    schema = {C.ACCOUNT: pl.String, "net": pl.String}
    if table is None or table.is_empty():
        return pl.DataFrame(schema=schema)
    feature, value = pl.col("feature"), pl.col("value")
    return (
        table.filter(feature.is_in([C.SOURCE_IP, C.PREFIX, C.ASN]) & (value != ""))
        .select(
            pl.col(C.ACCOUNT).str.to_lowercase(),
            pl.when(feature == C.ASN).then(pl.lit("AS") + value).otherwise(value).alias("net"),
        )
        .unique()
        .sort(C.ACCOUNT, "net")
    )


def _history_rows(known: pl.DataFrame, accounts: pl.DataFrame, compromised: list[str]) -> pl.DataFrame:
    """Legitimate-login rows (any service) for the networks accounts used on earlier nights, so that
    collateral and ``allowed_networks`` count them; an address also gives its prefixes. Compromised
    accounts' history is left out (it may hold the attacker's logins)."""
    from detector.enrich.geoip import classify

    addresses = known.filter(~pl.col("net").str.contains("/") & ~pl.col("net").str.starts_with("AS"))
    cut = classify(addresses.get_column("net").unique()).select(
        pl.col(C.SOURCE_IP).alias("net"), pl.col(C.PREFIX).alias("_p"), pl.col(C.PREFIX48).alias("_p48")
    )
    known = known.join(cut, on="net", how="left")
    parsed = known.select(
        pl.col(C.ACCOUNT).str.to_lowercase(),
        pl.col("net"),
        pl.col("net").str.extract(r"^AS(\d+)$").cast(pl.Int64, strict=False).alias(C.ASN),
        pl.col("net").str.extract(r"/(\d+)$").cast(pl.Int32, strict=False).alias("_len"),
        "_p",
        "_p48",
    ).filter(~pl.col(C.ACCOUNT).is_in(compromised))
    practitioners = accounts.select(C.ACCOUNT, pl.col(C.IS_PRACTITIONER).fill_null(False))
    rows = (
        parsed.join(practitioners, on=C.ACCOUNT, how="left")
        .select(
            C.ACCOUNT,
            pl.col(C.IS_PRACTITIONER).fill_null(False),
            pl.when(pl.col("_p").is_not_null()).then(pl.col("net")).alias(C.SOURCE_IP),
            pl.when(pl.col("_len").is_in([24, 64]))
            .then(pl.col("net"))
            .otherwise(pl.col("_p"))
            .alias(C.PREFIX),
            pl.when(pl.col("_len") == 48).then(pl.col("net")).otherwise(pl.col("_p48")).alias(C.PREFIX48),
            C.ASN,
            pl.lit(None, pl.String).alias(C.SERVICE),
        )
        .filter(
            pl.any_horizontal(
                pl.col(C.PREFIX).is_not_null(), pl.col(C.PREFIX48).is_not_null(), pl.col(C.ASN).is_not_null()
            )
        )
        .select([pl.col(k).cast(v) for k, v in scope.LEGIT_COLUMNS.items()])
    )
    with_address = rows.filter(pl.col(C.SOURCE_IP).is_not_null())
    prefix_only = rows.filter(pl.col(C.SOURCE_IP).is_null() & pl.col(C.PREFIX).is_not_null()).join(
        with_address.select(C.ACCOUNT, C.PREFIX).unique(), on=[C.ACCOUNT, C.PREFIX], how="anti"
    )
    return pl.concat(
        [with_address, prefix_only, rows.filter(pl.col(C.PREFIX).is_null() & pl.col(C.SOURCE_IP).is_null())]
    )
