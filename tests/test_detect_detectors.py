"""Each detector on tiny hand-made frames: fires at its threshold, not below it, not on benign look-alikes."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from detector.config import Config
from detector.detect import Detection, detect
from detector.features import History, update_history
from detector.features.testing import make_events

ALICE = "alice@example.org"
HOME = {"source_ip": "192.0.2.10", "prefix": "192.0.2.0/24", "asn": 3215, "country": "FR"}
HOSTING = {
    "source_ip": "198.51.100.7",
    "asn": 64500,
    "country": "NL",
    "is_hosting": True,
    "latitude": 52.37,
    "longitude": 4.9,
}


def run(rows: list[dict[str, Any]], history: History | None = None, **detectors: dict[str, Any]) -> Detection:
    return detect(make_events(rows), Config(detectors=detectors), history)


def fired(d: Detection, name: str) -> pl.DataFrame:
    return d.findings.filter(pl.col("detector") == name)


def entities(d: Detection, name: str) -> set[str]:
    return set(fired(d, name)["entity"].to_list())


def routine(
    n: int = 8, account: str = ALICE, start: int = 0, step: int = 3600, **kw: Any
) -> list[dict[str, Any]]:
    return [{"t": start + i * step, "account": account, **HOME, **kw} for i in range(n)]


def guesses(
    n: int, account: str = ALICE, start: int = 50000, step: int = 7, **kw: Any
) -> list[dict[str, Any]]:
    src = {**HOSTING, **kw}
    return [
        {
            "t": start + i * step + (i % 3),
            "account": account,
            "outcome": "failure",
            "password_hash": f"h{i}",
            **src,
        }
        for i in range(n)
    ]


def stale_device(n: int = 30, step: int = 600) -> list[dict[str, Any]]:
    """A phone with the old password, retrying every ten minutes from home, while the laptop logs in."""
    fails = [
        {
            "t": 100 + i * step + (i % 2) * 7,
            "outcome": "failure",
            "password_hash": "old",
            "account": ALICE,
            **HOME,
        }
        for i in range(n)
    ]
    return routine(12, step=1500) + fails


# brute force -------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "fires"), [(9, False), (10, True), (40, True)])
def test_brute_force_threshold(n: int, fires: bool):
    d = run(routine() + guesses(n))
    assert (ALICE in entities(d, "brute_force")) is fires


def test_brute_force_evidence_and_events():
    d = run(routine() + guesses(12))
    f = fired(d, "brute_force").row(0, named=True)
    ev = json.loads(f["evidence"])
    assert ev["failures"] == 12 and ev["sources"] == 1 and ev["distinct_passwords"] == 12
    assert f["technique"] == "T1110.001" and len(f["event_ids"]) == 12 and 0.5 <= f["score"] <= 1
    events = d.events.collect()
    hit = events.filter(pl.col("detectors").list.contains("brute_force"))
    assert hit.height == 12 and hit["techniques"].to_list()[0] == ["T1110.001"]
    assert hit["hit_brute_force"].unique().to_list() == [1.0]


def test_brute_force_config_override_changes_verdict():
    rows = routine() + guesses(12)
    assert ALICE in entities(run(rows), "brute_force")
    assert ALICE not in entities(run(rows, brute_force={"min_failures": 20}), "brute_force")
    assert fired(run(rows, brute_force={"enabled": False}), "brute_force").is_empty()


@pytest.mark.parametrize("hashes", ["old", None])
def test_stale_password_device_is_not_brute_force(hashes: str | None):
    rows = [{**r, "password_hash": hashes} if r.get("outcome") == "failure" else r for r in stale_device()]
    d = run(rows)
    assert fired(d, "brute_force").is_empty()
    assert ALICE in entities(d, "stale_password_device")
    assert fired(d, "suspicious_success").is_empty()


def test_scripted_guessing_is_not_a_stale_device():
    d = run(routine() + guesses(30))
    assert fired(d, "stale_password_device").is_empty()


def test_stale_device_needs_a_usual_network():
    rows = [{**r, **HOSTING} for r in stale_device() if r.get("outcome") == "failure"]
    assert fired(run(rows), "stale_password_device").is_empty()


# password spraying -------------------------------------------------------------------------


def spray(
    accounts: int, sources: list[str], tries: int = 1, same_password: bool = False
) -> list[dict[str, Any]]:
    rows = []
    for a in range(accounts):
        for k in range(tries):
            src = sources[a % len(sources)]
            rows.append(
                {
                    "t": 1000 + a * 30 + k,
                    "account": f"user{a}@example.org",
                    "outcome": "failure",
                    "password_hash": "Winter2026" if same_password else f"p{a}{k}",
                    **HOSTING,
                    "source_ip": src,
                }
            )
    return rows


@pytest.mark.parametrize(("accounts", "fires"), [(9, False), (10, True), (30, True)])
def test_spraying_from_one_source(accounts: int, fires: bool):
    d = run(spray(accounts, ["198.51.100.7"]))
    assert ("198.51.100.7" in entities(d, "password_spraying")) is fires


def test_spraying_many_tries_per_account_is_not_spraying():
    d = run(spray(12, ["198.51.100.7"], tries=5), brute_force={"enabled": False})
    assert "198.51.100.7" not in entities(d, "password_spraying")


def test_spraying_by_prefix_and_asn_when_each_source_stays_low():
    d = run(spray(12, [f"198.51.100.{i}" for i in range(1, 5)]))
    found = fired(d, "password_spraying")
    assert set(found["entity_type"]) == {"prefix", "asn"}
    assert set(found["entity"]) == {"198.51.100.0/24", "AS64500"}


def test_spraying_same_password_hash():
    d = run(spray(6, [f"198.51.100.{i}" for i in range(1, 7)], same_password=True))
    ev = [json.loads(e) for e in fired(d, "password_spraying")["evidence"]]
    assert any(e["level"] == "password_hash" and e["accounts"] == 6 for e in ev)


def test_spraying_sources_share_a_campaign():
    d = run(spray(20, ["198.51.100.7", "198.51.100.8"]))
    camps = d.campaigns.filter(pl.col("technique") == "T1110.003")
    assert camps.height == 1 and camps["sources"][0].to_list() == ["198.51.100.7", "198.51.100.8"]


def cgnat(users: int = 60, failing: int = 15) -> list[dict[str, Any]]:
    gw = {"source_ip": "100.64.1.1", "asn": 5410, "ip_legit_accounts": users, "prefix_legit_accounts": users}
    ok = [{"t": i * 50, "account": f"m{i}@example.org", **gw} for i in range(users)]
    bad = [
        {"t": 9000 + i * 50, "account": f"m{i}@example.org", "outcome": "failure", **gw}
        for i in range(failing)
    ]
    return ok + bad


def test_cgnat_users_mistyping_is_not_spraying_but_shared():
    d = run(cgnat())
    assert fired(d, "password_spraying").is_empty()
    assert "100.64.1.1" in entities(d, "shared_address")


# credential stuffing -----------------------------------------------------------------------


def stuffing(
    sources: int, start: int = 20000, unknown_every: int = 2, successes: int = 0
) -> list[dict[str, Any]]:
    rows = []
    for i in range(sources):
        ip = f"{10 + i // 60000}.{(i // 250) % 250}.{i % 250}.{1 + i % 7}"
        outcome = "unknown_user" if i % unknown_every == 0 else "failure"
        if i < successes:  # a lucky proxy: one miss, then a hit on another account
            rows.append(
                {"t": start + i, "account": f"miss{i}@example.org", "outcome": "failure", "source_ip": ip}
            )
            rows[-1].update(prefix=ip.rsplit(".", 1)[0] + ".0/24", asn=7000, country="US")
            outcome = "success"
        rows.append(
            {
                "t": start + i * 3 % 7200,
                "account": f"leak{i}@example.org",
                "outcome": outcome,
                "source_ip": ip,
                "prefix": ip.rsplit(".", 1)[0] + ".0/24",
                "asn": 7000 + i % 40,
                "country": "US",
                "password_hash": None,
            }
        )
    return rows


@pytest.mark.parametrize(("sources", "fires"), [(9, False), (10, True), (60, True)])
def test_stuffing_needs_enough_sources(sources: int, fires: bool):
    d = run(stuffing(sources))
    assert (not fired(d, "credential_stuffing").is_empty()) is fires


def test_stuffing_groups_thousands_of_sources_into_one_campaign():
    d = run(stuffing(3000, successes=12))
    f = fired(d, "credential_stuffing")
    assert f.height == 1
    camp = d.campaigns.filter(pl.col("technique") == "T1110.004").row(0, named=True)
    assert camp["n_sources"] == 3000 and camp["successes"] == 12
    ev = d.events.collect()
    assert ev.filter(pl.col("campaign") == camp["campaign"]).height == 3012
    assert ev["campaign_sources"].max() == 3000
    # the lucky guesses are suspicious successes from the campaign
    assert len(entities(d, "suspicious_success")) == 12


def test_stuffing_needs_unknown_accounts():
    d = run(stuffing(60, unknown_every=10**9))
    assert fired(d, "credential_stuffing").is_empty()
    assert (
        not run(stuffing(60, unknown_every=10**9), credential_stuffing={"min_unknown_share": 0.0})
        .findings.filter(pl.col("detector") == "credential_stuffing")
        .is_empty()
    )


def test_campaign_ids_are_stable():
    a, b = run(stuffing(40)), run(stuffing(40))
    assert a.campaigns["campaign"].to_list() == b.campaigns["campaign"].to_list()
    assert a.findings["finding_id"].to_list() == b.findings["finding_id"].to_list()
    assert a.findings["finding_id"].n_unique() == a.findings.height


# distributed brute force -------------------------------------------------------------------


def distributed(sources: int, each: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "t": 30000 + i * 97 + k,
            "account": ALICE,
            "outcome": "failure",
            "source_ip": f"203.0.{i // 200}.{i % 200 + 1}",
            "asn": 9000 + i,
            "password_hash": f"x{i}{k}",
        }
        for i in range(sources)
        for k in range(each)
    ]


@pytest.mark.parametrize(
    ("sources", "each", "fires"), [(9, 1, False), (10, 1, True), (300, 1, True), (12, 4, False)]
)
def test_distributed_brute_force(sources: int, each: int, fires: bool):
    d = run(routine() + distributed(sources, each))
    assert (ALICE in entities(d, "distributed_brute_force")) is fires
    if fires:
        assert fired(d, "distributed_brute_force")["campaign"][0].startswith("db-")
        assert fired(d, "credential_stuffing").is_empty()


# suspicious success ------------------------------------------------------------------------


def reasons(d: Detection) -> dict[str, bool]:
    ev = json.loads(fired(d, "suspicious_success")["evidence"][0])
    return {k: v for k, v in ev.items() if isinstance(v, bool) and v}


def test_success_after_guessing():
    d = run(routine() + guesses(12) + [{"t": 50200, "account": ALICE, **HOSTING}])
    assert "after_failures" in reasons(d)


VPN = {"source_ip": "185.213.0.10", "asn": 209850, "country": "FR", "is_vpn": True}


def test_success_from_hosting_never_used_by_the_account():
    d = run([*routine(2), {"t": 50000, "account": ALICE, **HOSTING}])
    assert "anonymous_network" in reasons(d)


@pytest.mark.parametrize(("history", "fires"), [(2, False), (8, True)])
def test_new_vpn_needs_enough_history(history: int, fires: bool):
    d = run([*routine(history), {"t": 50000, "account": ALICE, **VPN}])
    assert (not fired(d, "suspicious_success").is_empty()) is fires
    if fires:
        assert "new_vpn" in reasons(d)


def test_later_logins_from_the_same_source_follow():
    later = [{"t": 50000 + 600 * i, "account": ALICE, **HOSTING} for i in range(5)]
    d = run([*routine(8), *later])
    f = fired(d, "suspicious_success").row(0, named=True)
    assert len(f["event_ids"]) == 5 and json.loads(f["evidence"])["followed_logins"] == 4
    off = run([*routine(8), *later], suspicious_success={"follow_source": False})
    assert len(fired(off, "suspicious_success")["event_ids"][0]) == 1


def test_login_whose_session_downloads_the_mailbox():
    rows = [*routine(8), *sessions([1_000_000] * 5)]
    rows += [
        {"t": 60000, "account": ALICE, "session_id": "s1", **HOME},
        {
            "t": 60500,
            "account": ALICE,
            "action": "logout",
            "session_id": "s1",
            "bytes_out": 900_000_000,
            "source_ip": None,
        },
    ]
    d = run(rows)
    assert "bulk_download" in reasons(d)
    assert len(fired(d, "mailbox_download")["event_ids"][0]) == 2  # the logout and its login


@pytest.mark.parametrize(
    "rows",
    [
        routine(10),
        [
            *routine(8),
            {"t": 40000, "account": ALICE, "outcome": "failure", **HOME},
            {"t": 40020, "account": ALICE, **HOME},
        ],
    ],
    ids=["routine", "typo"],
)
def test_usual_logins_are_not_suspicious(rows: list[dict[str, Any]]):
    assert fired(run(rows), "suspicious_success").is_empty()


def test_history_carried_across_nights_flags_new_network():
    hist = update_history(None, make_events(routine(8)))
    d = run([{"t": 90000, "account": ALICE, **HOME}, {"t": 90100, "account": ALICE, **VPN}], history=hist)
    assert "new_vpn" in reasons(d)
    assert run([{"t": 90100, "account": ALICE, **VPN}]).findings.filter(pl.col("kind") == "attack").is_empty()


# atypical travel ---------------------------------------------------------------------------

SYDNEY = {"source_ip": "203.2.218.1", "asn": 1221, "country": "AU", "latitude": -33.87, "longitude": 151.21}


@pytest.mark.parametrize(
    ("second", "fires"),
    [
        (SYDNEY, True),
        ({**SYDNEY, "is_vpn": True}, False),
        ({**SYDNEY, "ip_legit_accounts": 40}, False),
        ({**SYDNEY, "asn": 3215}, False),
        ({"source_ip": "192.0.2.77", "latitude": 43.3, "longitude": 5.4, "country": "FR"}, False),
    ],
    ids=["sydney", "vpn", "cgnat", "same-asn", "same-prefix"],
)
def test_atypical_travel(second: dict[str, Any], fires: bool):
    d = run([{"t": 0, "account": ALICE, **HOME}, {"t": 3600, "account": ALICE, **second}])
    assert (ALICE in entities(d, "atypical_travel")) is fires


def test_ipv6_rotation_within_a_prefix_is_not_travel():
    v6 = {"asn": 3320, "country": "DE"}
    rows = [
        {
            "t": 0,
            "account": ALICE,
            "source_ip": "2001:db8:1:2::10",
            "prefix48": "2001:db8:1::/48",
            **v6,
            "latitude": 52.5,
            "longitude": 13.4,
        },
        {
            "t": 600,
            "account": ALICE,
            "source_ip": "2001:db8:1:2::99",
            "prefix48": "2001:db8:1::/48",
            **v6,
            "asn": 1,
            "latitude": 40.4,
            "longitude": -3.7,
        },
    ]
    assert fired(run(rows), "atypical_travel").is_empty()


def test_travel_finding_names_both_logins():
    d = run([{"t": 0, "account": ALICE, **HOME}, {"t": 3600, "account": ALICE, **SYDNEY}])
    f = fired(d, "atypical_travel").row(0, named=True)
    assert len(f["event_ids"]) == 2 and json.loads(f["evidence"])["km"] > 15000


# post-login --------------------------------------------------------------------------------


def sessions(sizes: list[int], **kw: Any) -> list[dict[str, Any]]:
    return [
        {"t": 1000 + i * 3600, "action": "logout", "account": ALICE, "bytes_out": s, **HOME, **kw}
        for i, s in enumerate(sizes)
    ]


@pytest.mark.parametrize(
    ("sizes", "fires"),
    [
        ([1_000_000] * 5 + [500_000_000], True),
        ([1_000_000] * 5 + [40_000_000], False),
        ([100_000_000] * 5 + [500_000_000], False),
    ],
    ids=["bulk", "below-min-bytes", "within-norm"],
)
def test_mailbox_download(sizes: list[int], fires: bool):
    assert (ALICE in entities(run(sessions(sizes)), "mailbox_download")) is fires


def sends(n: int, rcpt: int, start: int = 60000, **src: Any) -> list[dict[str, Any]]:
    return [
        {
            "t": start + i * 20,
            "action": "send",
            "account": ALICE,
            "recipients": rcpt,
            "service": "submission",
            **(src or HOME),
        }
        for i in range(n)
    ]


def test_send_burst_after_new_network_login():
    login = [{"t": 59000, "account": ALICE, **HOSTING}]
    d = run(routine(8) + login + sends(20, 10, **HOSTING))
    assert ALICE in entities(d, "send_burst")


def test_send_burst_from_usual_network_is_not_flagged():
    assert fired(run(routine(8) + sends(20, 10)), "send_burst").is_empty()
    assert ALICE in entities(run(routine(8) + sends(20, 60)), "send_burst")  # 1200 recipients: hard limit


# typo, shared address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fails", "gap", "fires"), [(1, 20, True), (3, 60, True), (5, 20, False), (1, 3600, False)]
)
def test_typo_then_success(fails: int, gap: int, fires: bool):
    rows = (
        routine(3)
        + [{"t": 20000 + i, "account": ALICE, "outcome": "failure", **HOME} for i in range(fails)]
        + [{"t": 20000 + fails + gap, "account": ALICE, **HOME}]
    )
    assert (ALICE in entities(run(rows), "typo_then_success")) is fires


def test_attacking_hosting_source_is_not_a_shared_address():
    rows = [{**r, "ip_legit_accounts": 5} for r in spray(20, ["198.51.100.7"])]
    assert fired(run(rows), "shared_address").is_empty()


# outputs -----------------------------------------------------------------------------------


def test_event_outputs_are_numbered_and_model_ready():
    from detector.features import FEATURE_COLUMNS

    d = run(routine() + guesses(12) + cgnat(10, 3))
    ev = d.events.collect()
    assert ev["event_id"].to_list() == list(range(ev.height))
    assert ev["timestamp"].is_sorted()
    feats = ev.select(FEATURE_COLUMNS)
    assert all(t == pl.Float64 for t in feats.schema.values())
    assert feats.null_count().sum_horizontal()[0] == 0
    assert ev.schema["is_hosting"] == pl.Boolean and ev.schema["ip_legit_accounts"] == pl.Int32
    assert not any(c.startswith("_") for c in ev.columns)


def test_user_name_without_domain_then_success_is_a_typo_not_stuffing():
    typo = [
        {"t": 20500, "account": "alice", "outcome": "unknown_user", **HOME},
        {"t": 20510, "account": ALICE, **HOME},
    ]
    d = run(stuffing(40) + typo)
    ev = [json.loads(e) for e in fired(d, "typo_then_success")["evidence"]]
    assert any(e["typo"] == "user_name" for e in ev)
    events = d.events.collect()
    assert events.filter(pl.col("source_ip") == HOME["source_ip"])["campaign"].null_count() == 2
    assert fired(d, "suspicious_success").is_empty()
