"""Takeover logins from anonymous infrastructure new to the account (``takeover.anonymous_new_logins``)."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import Det, blind_accounts, event, frame

from detector.config import Config
from detector.schema import C
from detector.score import score
from detector.score.takeover import ANONYMOUS_NEW_NEEDS

EXIT = "198.51.100.9"


def world(
    *,
    tor: bool = True,
    hosting: bool = False,
    vpn: bool = False,
    legit: int = 1,
    risk: float = 0.8,
    prefix_logins: int = 0,
    prior: int = 2,
) -> pl.DataFrame:
    """'nurse' logs in from her home line, then once from ``EXIT`` (login risk ``risk``)."""
    rows = [event("nurse", "192.0.2.50", "success", minute=i, legit=40) for i in range(2)]
    rows.append(event("nurse", EXIT, "success", minute=60, legit=legit, hosting=hosting, f_fail_rate=risk))
    at_exit = pl.col(C.SOURCE_IP) == EXIT
    return frame(rows).with_columns(
        at_exit.and_(tor).alias(C.IS_TOR),
        at_exit.and_(vpn).alias(C.IS_VPN),
        pl.when(at_exit).then(prefix_logins).otherwise(1).cast(pl.Float64).alias("acct_prefix_logins"),
        pl.when(at_exit).then(prior).otherwise(0).cast(pl.Float64).alias("acct_prior_successes"),
    )


def nurse(df: pl.DataFrame, cfg: Config | None = None) -> dict:
    s = score(Det(events=df.lazy()), blind_accounts(), cfg or Config())
    return s.accounts.filter(pl.col(C.ACCOUNT) == "nurse").row(0, named=True)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [({}, "a Tor exit"), ({"tor": False, "hosting": True}, "a hosting network")],
)
def test_a_risky_login_from_anonymous_infrastructure_new_to_the_account_is_a_takeover(kwargs, what) -> None:
    row = nurse(world(**kwargs))
    assert row["verdict"] == "compromised"
    assert row["risk_score"] == pytest.approx(0.8)
    assert row["reasons"][-1] == f"taken over: a login from {what} never used by the account before"


@pytest.mark.parametrize(
    ("why", "kwargs", "cfg"),
    [
        (
            "a VPN exit (its customers rotate through the exits)",
            {"tor": False, "hosting": True, "vpn": True},
            {},
        ),
        ("a home line", {"tor": False}, {}),
        ("a shared address", {"legit": 3}, {}),
        ("the account used that /24 before", {"prefix_logins": 1}, {}),
        ("the account never logged in before (cold: an owner's only client)", {"prior": 0}, {}),
        ("the login scored under account_compromised", {"risk": 0.49}, {}),
        ("the rule is off", {}, {"takeover_anonymous_new": False}),
    ],
)
def test_no_anonymous_takeover_without_every_sign(why, kwargs, cfg) -> None:
    config = Config().replace(scoring=cfg) if cfg else Config()
    row = nurse(world(**kwargs), config)
    assert row["verdict"] != "compromised", why
    assert not any(r.startswith("taken over") for r in row["reasons"])


def test_frames_without_the_history_columns_skip_the_rule() -> None:
    df = world().drop("acct_prefix_logins", "acct_prior_successes")
    assert not set(ANONYMOUS_NEW_NEEDS) <= set(df.columns)
    assert nurse(df)["verdict"] != "compromised"
