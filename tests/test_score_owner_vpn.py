"""The owner's own VPN (``accounts.owner_vpn_accounts``): a risky login through a VPN exit of an AS the
account used before does not alone make it compromised."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import Det, blind_accounts, event, frame, stub_model

from detector.config import Config
from detector.schema import C
from detector.score import score
from detector.score.takeover import OWNER_VPN_NEEDS

EXIT = "185.213.2.10"


def world(
    *,
    vpn: bool = True,
    new_asn: int = 0,
    prior: int = 6,
    detectors: tuple[str, ...] = (),
    home_risk: float = 0.0,
    sprayed: int = 0,
) -> pl.DataFrame:
    """'nurse' logs in from home (login risk ``home_risk``), then once through ``EXIT`` (risk 0.9),
    after a stuffing list failed through the same exit on ``sprayed`` other accounts."""
    rows = [event("nurse", "192.0.2.50", "success", minute=0, f_fail_rate=home_risk)]
    rows += [
        event(f"u{i}", EXIT, "failure", minute=10 + i, asn=209850, legit=0, f_fail_rate=1.0)
        for i in range(sprayed)
    ]
    rows.append(
        event("nurse", EXIT, "success", minute=60, asn=209850, legit=0, f_fail_rate=0.9, detectors=detectors)
    )
    at_exit = pl.col(C.SOURCE_IP) == EXIT
    return frame(rows).with_columns(
        at_exit.and_(vpn).alias(C.IS_VPN),
        pl.when(at_exit).then(new_asn).otherwise(0).cast(pl.Float64).alias("is_new_asn"),
        pl.lit(prior, pl.Float64).alias("acct_prior_successes"),
    )


ON = Config().replace(scoring={"owner_vpn": True})
"""The guard is opt-in."""


def nurse(df: pl.DataFrame, cfg: Config | None = None, model=None) -> dict:
    s = score(Det(events=df.lazy()), model or stub_model(), cfg or ON)
    return s.accounts.filter(pl.col(C.ACCOUNT) == "nurse").row(0, named=True)


def test_a_risky_login_through_the_owners_own_vpn_is_at_most_suspicious() -> None:
    row = nurse(world())
    assert row["verdict"] == "suspicious"
    assert row["risk_score"] == pytest.approx(0.2)
    assert row["reasons"][-1] == "explained as benign: a VPN exit of AS209850 the account used before"


@pytest.mark.parametrize(
    ("why", "kwargs", "cfg"),
    [
        ("an address that is not a VPN exit", {"vpn": False}, {}),
        ("an AS the account never used", {"new_asn": 1}, {}),
        ("a cold account (no history to tell)", {"prior": 4}, {}),
        ("the session downloaded the mailbox", {"detectors": ("mailbox_download",)}, {}),
        ("the session sent a burst", {"detectors": ("send_burst",)}, {}),
        ("another risky login from elsewhere", {"home_risk": 0.7}, {}),
        ("the guard is off", {}, {"owner_vpn": False}),
        ("the guard is off by default", {}, None),
    ],
)
def test_compromised_unless_every_sign_of_the_owners_vpn(why, kwargs, cfg) -> None:
    config = Config() if cfg is None else Config().replace(scoring={"owner_vpn": True, **cfg})
    row = nurse(world(**kwargs), config)
    assert row["verdict"] == "compromised", why
    assert not any("VPN exit of" in r for r in row["reasons"])


def test_nor_a_sprayers_right_guess_through_the_owners_own_vpn() -> None:
    """The account model explains the login away; the takeover rule must not bring it back."""
    assert nurse(world(sprayed=4), model=blind_accounts())["verdict"] != "compromised"
    row = nurse(world(sprayed=4), Config().replace(scoring={"owner_vpn": False}), blind_accounts())
    assert row["verdict"] == "compromised"
    assert row["reasons"][-1].startswith("taken over: a source that failed on 4 accounts")


def test_frames_without_the_history_columns_skip_the_guard() -> None:
    df = world().drop("is_new_asn", "acct_prior_successes")
    assert not set(OWNER_VPN_NEEDS) <= set(df.columns)
    assert nurse(df)["verdict"] == "compromised"
