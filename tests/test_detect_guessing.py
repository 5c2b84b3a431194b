"""guessing_source on tiny frames: sources that fail without a name and never log in, and the
reasons and verdicts scoring gives them."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import Config
from detector.detect import Detection, detect
from detector.features.testing import make_events
from detector.score import score

NAME = "guessing_source"
ALICE = "alice@example.org"
HOME = {"source_ip": "192.0.2.10", "asn": 3215, "country": "FR"}
BOT = "203.0.113.7"


def unnamed(n: int, ip: str = BOT, start: int = 1000, step: int = 60, **kw: Any) -> list[dict[str, Any]]:
    """Postfix SASL failures without a user name (account null)."""
    return [
        {
            "t": start + i * step,
            "account": None,
            "daemon": "postfix",
            "service": "submission",
            "outcome": "failure",
            "source_ip": ip,
            "asn": 64500,
            "ip_legit_accounts": 0,
            "prefix_legit_accounts": 0,
            **kw,
        }
        for i in range(n)
    ]


def logins(n: int = 3, account: str = ALICE, start: int = 0, **kw: Any) -> list[dict[str, Any]]:
    return [{"t": start + i * 600, "account": account, **HOME, **kw} for i in range(n)]


def run(rows: list[dict[str, Any]], **params: Any) -> Detection:
    cfg = Config(detectors={NAME: params} if params else {})
    return detect(make_events(rows), cfg)


def found(d: Detection, entity_type: str | None = None) -> pl.DataFrame:
    f = d.findings.filter(pl.col("detector") == NAME)
    return f if entity_type is None else f.filter(pl.col("entity_type") == entity_type)


@pytest.mark.parametrize(
    ("failures", "fires"),
    [(9, False), (10, True), (540, True)],
)
def test_fires_at_the_threshold_without_any_account(failures: int, fires: bool):
    d = run(logins() + unnamed(failures, step=30))
    assert (found(d, "source_ip")["entity"].to_list() == [BOT]) is fires


def test_evidence_names_the_window_and_the_unnamed_failures():
    d = run(logins() + unnamed(12))
    ev = json.loads(found(d, "source_ip")["evidence"][0])
    assert ev["unnamed_failures"] == 12 and ev["failures"] == 12 and ev["successes"] == 0
    assert ev["window"].endswith("Z") and ev["level"] == "source_ip"


def test_one_success_anywhere_in_the_input_clears_the_source():
    late = {"t": 90_000, "account": ALICE, "source_ip": BOT, "asn": 64500, "ip_legit_accounts": 0}
    assert found(run(logins() + unnamed(50) + [late])).is_empty()


def test_an_address_known_from_history_is_not_judged():
    d = run(logins() + unnamed(50, ip_legit_accounts=2))
    assert found(d).is_empty()


def test_one_named_account_alone_is_left_to_brute_force():
    rows = [{**r, "account": ALICE} for r in unnamed(30)]
    assert found(run(logins() + rows)).is_empty()


def test_named_guesses_against_several_accounts_count():
    rows = [{**r, "account": f"u{i % 4}@example.org"} for i, r in enumerate(unnamed(20))]
    assert found(run(logins() + rows), "source_ip")["entity"].to_list() == [BOT]


def test_windows_are_judged_apart():
    """Nine a day for a week stays below ten a window; 20 in one day of a month does not dilute."""
    slow = [r for day in range(7) for r in unnamed(9, start=day * 86400 + 100)]
    assert found(run(logins() + slow, min_failures_input=0)).is_empty()
    month = [r for day in range(30) for r in unnamed(1, ip="198.51.100.9", start=day * 86400 + 50)]
    burst = unnamed(20, start=10 * 86400 + 200)
    d = run(logins() + month + burst)
    f = found(d, "source_ip")
    assert f["entity"].to_list() == [BOT]
    assert f["start"][0].day == f["end"][0].day


def test_prefix_and_asn_when_several_sources_do_it():
    rows = [r for k in range(3) for r in unnamed(4, ip=f"203.0.113.{k + 1}", start=k * 7)]
    d = run(logins() + rows)
    assert found(d, "source_ip").is_empty()  # 4 each: below the threshold alone
    assert found(d, "prefix")["entity"].to_list() == ["203.0.113.0/24"]
    assert found(d, "asn")["entity"].to_list() == ["AS64500"]


def test_a_prefix_with_a_success_is_not_judged():
    rows = [r for k in range(3) for r in unnamed(4, ip=f"203.0.113.{k + 1}", start=k * 7)]
    ok = {"t": 50, "account": ALICE, "source_ip": "203.0.113.200", "asn": 3215}
    d = run(logins() + rows + [ok])
    assert found(d, "prefix").is_empty()


def test_levels_and_thresholds_come_from_configuration():
    rows = [r for k in range(3) for r in unnamed(4, ip=f"203.0.113.{k + 1}", start=k * 7)]
    d = run(logins() + rows, levels=["source_ip"], min_failures=4)
    assert set(found(d)["entity_type"]) == {"source_ip"} and found(d).height == 3


def test_the_source_is_malicious_with_a_reason_and_the_user_stays_benign():
    s = score(run(logins() + unnamed(30)), None, Config()).sources
    bot = s.filter(pl.col("source_ip") == BOT).row(0, named=True)
    assert bot["verdict"] == "malicious" and bot["accounts_targeted"] == 0
    assert bot["reasons"][0].startswith("guessing: no successful login, 30 failed attempts")
    assert "(30 without an account name)" in bot["reasons"][0]
    home = s.filter(pl.col("source_ip") == HOME["source_ip"]).row(0, named=True)
    assert home["verdict"] == "benign" and home["reasons"] == []


def test_null_accounts_never_reach_the_account_table():
    a = score(run(logins() + unnamed(30)), None, Config()).accounts
    assert a.get_column("account").null_count() == 0


@settings(max_examples=25, deadline=None)
@given(
    ok_at=st.one_of(st.none(), st.integers(0, 20)),
    n=st.integers(0, 40),
)
def test_a_source_that_ever_logs_in_is_never_judged(ok_at: int | None, n: int):
    rows = unnamed(n)
    if ok_at is not None:
        ok = {"t": 5000 + ok_at, "account": ALICE, "source_ip": BOT, "ip_legit_accounts": 0}
        rows.insert(min(ok_at, len(rows)), ok)
    hit = not found(run(logins() + rows)).is_empty()
    assert hit == (ok_at is None and n >= 10)


@pytest.mark.parametrize(("days", "fires"), [(5, False), (6, True)])
def test_a_slow_guesser_is_judged_over_the_whole_input(days: int, fires: bool):
    """Nine a day stays below every window's threshold; 54 over six days is past the input's 50."""
    slow = [r for day in range(days) for r in unnamed(9, start=day * 86400 + 100)]
    f = found(run(logins() + slow), "source_ip")
    assert (f["entity"].to_list() == [BOT]) is fires
    if fires:
        ev = json.loads(f["evidence"][0])
        assert ev["window"] == "input" and ev["failures"] == 9 * days
        assert (f["end"][0] - f["start"][0]).days == days - 1


def test_a_source_caught_in_a_window_is_not_reported_again_over_the_input():
    rows = unnamed(60, step=30)
    f = found(run(logins() + rows), "source_ip")
    assert f.height == 1 and json.loads(f["evidence"][0])["window"] != "input"


def test_guessers_sharing_a_network_are_one_campaign_and_a_lone_one_is_none():
    rows = (
        unnamed(12, ip="203.0.113.1")
        + unnamed(12, ip="203.0.113.2")
        + unnamed(12, ip="198.51.100.9", asn=64999)
    )
    d = run(logins() + rows)
    camp = d.events.filter(pl.col("source_ip").str.starts_with("203.0.113.")).select("campaign").collect()
    assert camp["campaign"].n_unique() == 1 and camp["campaign"][0].startswith("gs-")
    lone = d.events.filter(pl.col("source_ip") == "198.51.100.9").select("campaign").collect()
    assert lone["campaign"].null_count() == lone.height
    row = d.campaigns.filter(pl.col("campaign") == camp["campaign"][0]).row(0, named=True)
    assert row["technique"] == "T1110.001" and row["n_sources"] == 2 and row["accounts_targeted"] == 0
    assert set(found(d, "source_ip")["campaign"].drop_nulls()) == {camp["campaign"][0]}


@pytest.mark.parametrize(("home", "fires"), [("2001:db8:7:7::1", False), ("2001:db8:7:8::1", True)])
def test_an_ipv6_address_whose_64_logs_in_is_not_judged_alone(home: str, fires: bool):
    """A phone with an old password on the same /64 as the laptop that logs in (privacy addresses)."""
    ok = {"t": 10, "account": ALICE, "source_ip": home, "asn": 64500, "ip_legit_accounts": 0}
    rows = [ok, *unnamed(20, ip="2001:db8:7:7::beef")]
    assert (not found(run(logins() + rows), "source_ip").is_empty()) is fires


@pytest.mark.parametrize(
    ("params", "message"),
    [({"levels": ["source_ip", "prefx"]}, "did you mean prefix"), ({"min_failures": -1}, "negative")],
)
def test_bad_parameters_are_configuration_errors(params: dict[str, Any], message: str):
    from detector.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        run(logins(), **params)
    assert message in str(e.value) + str(getattr(e.value, "hint", ""))
