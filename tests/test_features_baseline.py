"""Behavioural baseline: likelihood ratio against the account's own history, History round trips."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import FeaturesConfig
from detector.errors import StateError
from detector.features import FEATURE_COLUMNS, History, build_features, learnable, update_history
from detector.features.baseline import add_baseline
from detector.features.testing import make_events
from detector.features.windows import prepare

HOME = {"source_ip": "192.0.2.10", "asn": 3215, "country": "FR"}
AWAY = {"source_ip": "203.0.113.9", "asn": 64500, "country": "RO", "is_hosting": True}


def _routine(account: str, n: int, start: int = 0, **kw: object) -> list[dict]:
    return [{"t": start + i * 3600, "account": account, **HOME, **kw} for i in range(n)]


def _score(rows: list[dict], history: History | None = None, **kw: object) -> pl.DataFrame:
    lf = prepare(make_events(rows), "1d")
    return add_baseline(lf, history, **kw).collect()


def test_usual_network_scores_lower_than_new_asn():
    rows = _routine("alice@example.org", 10) + _routine(
        "bob@example.org", 10, source_ip="198.51.100.4", asn=1
    )
    rows += [
        {"t": 40000, "account": "alice@example.org", **HOME},
        {"t": 40001, "account": "alice@example.org", **AWAY},
    ]
    df = _score(rows)
    usual, new = df.filter(pl.col("timestamp") >= df["timestamp"].max() - pl.duration(seconds=1))[
        "baseline_score"
    ].to_list()
    assert usual < 0 < new
    last = df.sort("event_id").tail(1)
    assert last["is_new_asn"][0] == 1 and last["is_new_country"][0] == 1


def test_cold_start_account_scores_zero_and_no_new_flags():
    df = _score([{"t": 1, **AWAY}, {"t": 2, **HOME}], cold_start=5)
    assert df["baseline_score"][0] == 0.0  # no history at all: no evidence either way
    assert abs(df["baseline_score"][1]) < 2.0  # one earlier login: leans on the population
    assert df["is_new_asn"].sum() == 0


def test_counts_are_strictly_before_the_event():
    df = _score(_routine("alice@example.org", 4))
    assert df["acct_prior_successes"].to_list() == [0, 1, 2, 3]
    assert df["_prior_source_ip"].to_list() == [0, 1, 2, 3]


def test_history_makes_the_first_login_of_the_night_familiar():
    past = make_events(
        _routine("alice@example.org", 8) + _routine("bob@example.org", 8, source_ip="198.51.100.4", asn=1)
    )
    hist = update_history(None, past)
    tonight = [
        {"t": 90000, "account": "alice@example.org", **HOME},
        {"t": 90001, "account": "alice@example.org", **AWAY},
    ]
    cold = _score(tonight)
    warm = _score(tonight, hist)
    assert warm["acct_prior_successes"].to_list() == [8, 9]
    assert warm["baseline_score"][0] < cold["baseline_score"][0]
    assert warm["baseline_score"][1] > warm["baseline_score"][0]
    assert warm["is_new_asn"].to_list() == [0, 1]


def test_update_history_counts_successes_only_and_merges():
    rows = [*_routine("alice@example.org", 3), {"t": 99, "outcome": "failure", **AWAY}]
    h1 = update_history(History.empty(), make_events(rows))
    acc = h1.accounts.filter(pl.col("feature") == "asn")
    assert acc["value"].to_list() == ["3215"] and acc["count"].to_list() == [3]
    h2 = update_history(h1, make_events(rows))
    assert h2.accounts.filter(pl.col("feature") == "asn")["count"].to_list() == [6]
    assert h2.population.filter(pl.col("feature") == "country")["count"].to_list() == [6]


def test_volume_norm_merges_like_one_batch():
    rows = [{"t": i, "action": "logout", "bytes_out": 1000 * (i + 1)} for i in range(6)]
    one = update_history(None, make_events(rows)).volumes
    two = update_history(update_history(None, make_events(rows[:2])), make_events(rows[2:])).volumes
    a = one.filter(pl.col("metric") == "bytes_out").row(0, named=True)
    b = two.filter(pl.col("metric") == "bytes_out").row(0, named=True)
    assert a["n"] == b["n"] == 6
    assert a["mean_log"] == pytest.approx(b["mean_log"]) and a["m2_log"] == pytest.approx(b["m2_log"])


def test_history_round_trip_and_validation():
    h = update_history(None, make_events(_routine("alice@example.org", 3)))
    again = History.from_frames(h.to_frames())
    assert again.accounts.equals(h.accounts) and again.population.equals(h.population)
    frames = h.to_frames()
    with pytest.raises(StateError, match="lacks table"):
        History.from_frames({k: v for k, v in frames.items() if k != "volumes"})
    with pytest.raises(StateError, match="count"):
        History.from_frames(
            {**frames, "accounts": frames["accounts"].with_columns(pl.col("count").cast(pl.Float64))}
        )
    assert History.empty().n_accounts == 0


def test_prune_drops_old_values():
    h = update_history(None, make_events(_routine("alice@example.org", 3)))
    late = h.accounts["last_seen"].max()
    assert h.prune(late).accounts.height == h.accounts.height
    assert h.prune(late + timedelta(seconds=1)).accounts.height == 0


@pytest.mark.parametrize("lazy", [True, False])
def test_build_features_eager_or_lazy(lazy: bool):
    lf = make_events(_routine("alice@example.org", 3))
    out = build_features(lf if lazy else lf.collect().lazy(), FeaturesConfig()).collect()
    base = [
        c
        for c in FEATURE_COLUMNS
        if not c.startswith(("hit_", "campaign_", "src_is", "acct_is", "src_legit", "src_prefix_legit"))
    ]
    assert set(base) <= set(out.columns)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(min_value=0, max_value=15))
def test_property_familiar_never_scores_above_new(n: int):
    rows = _routine("alice@example.org", n) + _routine("bob@example.org", 5, source_ip="198.51.100.4", asn=1)
    rows += [
        {"t": 90000, "account": "alice@example.org", **HOME},
        {"t": 90001, "account": "alice@example.org", **AWAY},
    ]
    df = _score(rows).sort("event_id").tail(2)
    usual, new = df["baseline_score"].to_list()
    assert usual <= new


@settings(max_examples=10, deadline=None)
@given(n=st.integers(min_value=1, max_value=12))
def test_property_any_history_makes_home_familiar(n: int):
    rows = [
        *_routine("bob@example.org", 20, source_ip="198.51.100.4", asn=1, country="BE"),
        *_routine("alice@example.org", n),
        {"t": 90000, "account": "alice@example.org", **HOME},
    ]
    assert _score(rows).sort("event_id")["baseline_score"][-1] < 0


@pytest.mark.parametrize(
    ("account", "risk", "learned"),
    [
        pytest.param("mallory-victim@example.org", 0.9, False, id="attacker-login-into-compromised"),
        pytest.param("mallory-victim@example.org", 0.1, True, id="owner-calm-login-into-compromised"),
        pytest.param("alice@example.org", 0.9, True, id="risky-login-of-clean-account"),
        pytest.param(None, 0.9, True, id="no-account"),
    ],
)
def test_learnable_drops_only_the_attackers_logins_into_compromised_accounts(account, risk, learned):
    events = pl.LazyFrame(
        {"account": [account], "risk_score": [risk]}, schema_overrides={"account": pl.String}
    )
    compromised = pl.LazyFrame({"account": ["mallory-victim@example.org"], "verdict": ["compromised"]})
    kept = learnable(events, compromised, 0.5).collect()
    assert kept.height == int(learned)
    assert kept.columns == ["account", "risk_score"]


def test_history_does_not_learn_the_attackers_network():
    rows = [*_routine("alice@example.org", 3), {"t": 99999, "account": "alice@example.org", **AWAY}]
    events = make_events(rows).with_columns(
        pl.when(pl.col("source_ip") == AWAY["source_ip"]).then(0.95).otherwise(0.05).alias("risk_score")
    )
    compromised = pl.LazyFrame({"account": ["alice@example.org"]})
    hist = update_history(None, learnable(events.lazy(), compromised, 0.5))
    learned = hist.accounts.filter(pl.col("feature") == "asn").get_column("value").to_list()
    assert learned == [str(HOME["asn"])]


@pytest.mark.parametrize(
    ("source", "risk", "learned"),
    [
        pytest.param("203.0.113.66", 0.05, False, id="calm-looking-success-from-an-attacker"),
        pytest.param("203.0.113.66", 0.9, False, id="risky-success-from-an-attacker"),
        pytest.param("198.51.100.7", 0.05, True, id="owner-elsewhere"),
    ],
)
def test_learnable_drops_every_success_from_an_attacking_source(source, risk, learned):
    """A failed login a parser read as a success (the name held the daemon's success wording) comes
    from the attacker's address: it never becomes the account's own network, whatever its risk."""
    events = pl.LazyFrame(
        {"account": ["alice@example.org"], "source_ip": [source], "risk_score": [risk]},
    )
    attackers = pl.LazyFrame({"source_ip": ["203.0.113.66"], "verdict": ["malicious"]})
    kept = learnable(events, pl.LazyFrame(schema={"account": pl.String}), 0.5, attackers).collect()
    assert kept.height == int(learned)
    assert kept.columns == ["account", "source_ip", "risk_score"]


def test_history_does_not_learn_a_forged_success():
    rows = [*_routine("alice@example.org", 3), {"t": 99999, "account": "alice@example.org", **AWAY}]
    events = make_events(rows).with_columns(pl.lit(0.05).alias("risk_score"))
    attackers = pl.LazyFrame({"source_ip": [AWAY["source_ip"]]})
    no_one = pl.LazyFrame(schema={"account": pl.String})
    hist = update_history(None, learnable(events.lazy(), no_one, 0.5, attackers))
    learned = hist.accounts.filter(pl.col("feature") == "asn").get_column("value").to_list()
    assert learned == [str(HOME["asn"])]
    fooled = update_history(None, learnable(events.lazy(), no_one, 0.5))
    assert (
        str(AWAY["asn"]) in fooled.accounts.filter(pl.col("feature") == "asn").get_column("value").to_list()
    )
