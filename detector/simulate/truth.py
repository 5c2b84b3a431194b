"""Ground truth: the incidents file rows derived from the attack sessions.

Rules (see docs/labels.md): a source address no legitimate session ever used gets one row per
campaign and technique with an empty account; a shared source (VPN exit, CGNAT gateway, a proxy on
a household's line) gets one row per attacked account; every attacker login into an account whose
password it holds gets an ``account_takeover`` row with ``compromised = true``.
"""

from __future__ import annotations

import polars as pl

from detector.simulate.sessions import US

LABEL_COLUMNS = ("campaign", "technique", "source_ip", "account", "start", "end", "compromised")


def _windows(attack: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return attack.group_by(keys).agg(
        start=pl.col("ts").min() // US * US,
        end=((pl.col("ts") + pl.col("duration")).max() + 2 * US) // US * US,
    )


def derive_labels(sessions: pl.DataFrame) -> pl.DataFrame:
    """Label rows (``start``/``end`` as UTC microseconds) for the attack sessions of ``sessions``."""
    attack = sessions.filter(pl.col("campaign").is_not_null())
    legit_ips = sessions.filter(pl.col("campaign").is_null()).select(pl.col("ip").unique())
    attack = attack.with_columns(shared=pl.col("ip").is_in(legit_ips["ip"].implode()))
    techniques = attack.filter(pl.col("technique") != "account_takeover")
    exclusive = _windows(techniques.filter(~pl.col("shared")), ["campaign", "technique", "ip"]).with_columns(
        account=pl.lit(None, pl.String), compromised=pl.lit(False)
    )
    shared = _windows(
        techniques.filter(pl.col("shared")), ["campaign", "technique", "ip", "account"]
    ).with_columns(compromised=pl.lit(False))
    takeover = _windows(attack.filter(pl.col("compromised")), ["campaign", "ip", "account"]).with_columns(
        technique=pl.lit("account_takeover"), compromised=pl.lit(True)
    )
    cols = ["campaign", "technique", "ip", "account", "start", "end", "compromised"]
    rows = pl.concat([f.select(cols) for f in (exclusive, shared, takeover)])
    return rows.rename({"ip": "source_ip"}).sort(
        ["campaign", "technique", "start", "source_ip", "account"], nulls_last=True
    )


def conflicts(sessions: pl.DataFrame, labels: pl.DataFrame) -> pl.Series:
    """Mask of legitimate sessions that an (address, account) label row would wrongly cover."""
    pairs = labels.filter(pl.col("account").is_not_null()).select(
        ip="source_ip", account="account", lo="start", hi="end"
    )
    legit = sessions.with_row_index("_row").filter(pl.col("campaign").is_null())
    hit = (
        legit.join(pairs, on=["ip", "account"])
        .filter((pl.col("ts") <= pl.col("hi")) & (pl.col("ts") + pl.col("duration") + 2 * US >= pl.col("lo")))
        .select("_row")
        .unique()
    )
    return pl.Series(
        "conflict",
        pl.int_range(sessions.height, eager=True).is_in(hit["_row"].implode()).to_list(),
        dtype=pl.Boolean,
    )
