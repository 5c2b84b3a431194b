"""Takeover logins from an attacking hosting network (``detector.score.hosted``), on hand-made frames."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from score_frames import Det, blind_accounts, event, frame

from detector.config import Config
from detector.schema import C
from detector.score import score
from detector.score.hosted import HOSTED, hosted_takeovers, mark
from detector.score.verdicts import score_shards

NET = {"asn": 64501, "as_org": "RentCo", "hosting": True, "legit": 0}
WIN = "198.51.100.77"


def world(
    *, attackers: int = 3, new_asn: int = 1, vpn: bool = False, legit: int = 1, attackers_vpn: bool = False
) -> pl.DataFrame:
    """``attackers`` hosting addresses of AS64501 spray five accounts; then a sibling address of the
    same AS logs into 'nurse' at the first try; the nurse's own logins come from a hospital NAT."""
    rows = [
        event(
            f"p{k}",
            f"198.51.100.{i + 1}",
            "failure",
            minute=i * 5 + k,
            detectors=("password_spraying", "credential_stuffing"),
            techniques=("T1110.003",),
            f_fail_rate=1.0,
            **NET,
        )
        for i in range(attackers)
        for k in range(5)
    ]
    rows.append(event("nurse", WIN, "success", minute=60, **{**NET, "legit": legit}))
    rows += [event("nurse", "192.0.2.50", "success", minute=70 + i, legit=40) for i in range(3)]
    df = frame(rows)
    attacker = pl.col(C.SOURCE_IP).str.starts_with("198.51.100.") & (pl.col(C.SOURCE_IP) != WIN)
    return df.with_columns(
        pl.when(pl.col(C.SOURCE_IP) == WIN).then(new_asn).otherwise(0).cast(pl.Float64).alias("is_new_asn"),
        pl.when(pl.col(C.SOURCE_IP) == WIN)
        .then(vpn)
        .when(attacker)
        .then(attackers_vpn)
        .otherwise(False)
        .alias(C.IS_VPN),
    )


def nurse(df: pl.DataFrame, cfg: Config | None = None, model=None) -> dict:
    s = score(Det(events=df.lazy()), model or blind_accounts(), cfg or Config())
    return s.accounts.filter(pl.col(C.ACCOUNT) == "nurse").row(0, named=True)


def test_a_first_try_login_from_an_attacking_hosting_network_is_a_takeover() -> None:
    s = score(Det(events=world().lazy()), blind_accounts(), Config())
    row = s.accounts.filter(pl.col(C.ACCOUNT) == "nurse").row(0, named=True)
    assert row["verdict"] == "compromised"
    assert row["reasons"][-1] == (
        "taken over: a login from AS64501 RentCo, a hosting network where 3 attacking addresses "
        "operate tonight, which the account never used before"
    )
    win = s.events.filter(pl.col(C.SOURCE_IP) == WIN)
    assert win[C.RISK_SCORE].item() >= 0.5
    assert HOSTED not in s.events.columns and "_rule_risk" not in s.events.columns
    assert s.sources.filter(pl.col(C.SOURCE_IP) == WIN)["verdict"].item() == "malicious"
    assert s.sources.get_column(C.SOURCE_IP).is_unique().all()


@pytest.mark.parametrize(
    ("why", "kwargs", "cfg"),
    [
        ("the account logged in from that AS before", {"new_asn": 0}, None),
        ("the login came through a VPN exit (shared by its customers)", {"vpn": True}, None),
        ("only two attacking addresses in the AS", {"attackers": 2}, None),
        ("the address is shared by legitimate users", {"legit": 3}, None),
        ("the attackers are VPN exits, not rented hosting", {"attackers_vpn": True}, None),
        ("the rule is off", {}, {"takeover_network_sources": 0}),
        ("the bar is higher", {}, {"takeover_network_sources": 4}),
    ],
)
def test_no_hosted_takeover_without_every_sign(why, kwargs, cfg) -> None:
    config = Config().replace(scoring=cfg) if cfg else Config()
    row = nurse(world(**kwargs), config)
    assert row["verdict"] != "compromised", why
    assert not any(r.startswith("taken over") for r in row["reasons"])


def test_the_rule_table_names_the_network_and_its_attackers() -> None:
    df = world(attackers=4).lazy()
    attackers = df.filter(pl.col("f_fail_rate") == 1.0).select(C.SOURCE_IP, C.ASN).unique()
    got = hosted_takeovers(df, attackers, Config()).collect()
    assert got.rows() == [(20, 64501, 4)]


def test_mark_raises_only_the_marked_events_and_only_upwards() -> None:
    events = pl.LazyFrame({C.EVENT_ID: [1, 2, 3], "r": [0.1, 0.9, 0.2]})
    hosted = pl.DataFrame(
        {C.EVENT_ID: [2, 3], C.ASN: [1, 1], "_n": [3, 3]}, schema_overrides={"_n": pl.UInt32}
    )
    out = mark(events, hosted, Config(), ["r"]).collect()
    assert out["r"].to_list() == [0.1, 0.9, 0.5]
    assert out[HOSTED].to_list() == [None, 3, 3]


@pytest.mark.parametrize("shards", [1, 2])
def test_scored_per_shard_as_the_whole_night(tmp_path: Path, shards: int) -> None:
    df = world()
    paths = []
    for k in range(shards):
        part = df.filter(pl.col(C.ACCOUNT).hash(seed=0) % shards == k)
        paths.append(tmp_path / f"shard-{k}.parquet")
        part.write_parquet(paths[-1])
    whole = score(Det(events=df.lazy()), None, Config())
    parts = score_shards(tuple(paths), None, Config())
    assert whole.accounts.filter(pl.col(C.ACCOUNT) == "nurse")["verdict"].item() == "compromised"
    assert parts.accounts.equals(whole.accounts)
    assert parts.sources.equals(whole.sources)
    streamed = pl.concat(list(parts.batches()))
    assert streamed.select(C.EVENT_ID, C.RISK_SCORE).equals(whole.events.select(C.EVENT_ID, C.RISK_SCORE))
    assert HOSTED not in streamed.columns
