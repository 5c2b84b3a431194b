"""The response plan on tiny hand-made worlds: scope widening, shared addresses, allowlist, accounts."""

import json
from datetime import timedelta

import polars as pl
import pytest

from detector.config import Config
from detector.errors import ConfigError
from detector.recommend import recommend, waves
from detector.recommend.plan import measure_id
from detector.schema import RECOMMENDATION_SCHEMA, C
from tests.recommend_frames import NOW, Detection, ev, light_world, world


def plan_for(rows, srcs, accs=None, detection=None, **plan_cfg):
    cfg = Config().replace(plan=plan_cfg) if plan_cfg else Config()
    return recommend(world(rows, srcs, accs), detection or Detection(), cfg, NOW)


def blocks(plan):
    return plan.filter(pl.col("action") == "block")


def by(plan, action):
    return plan.filter(pl.col("action") == action)


def spray(ips, accounts=("u0", "u1", "u2"), **kw):
    return [ev(ip, a, **kw) for ip in ips for a in accounts]


def test_schema_and_contract_columns():
    plan = plan_for(spray(["203.0.113.5"]), [{C.SOURCE_IP: "203.0.113.5"}])
    assert plan.schema == RECOMMENDATION_SCHEMA
    b = blocks(plan).row(0, named=True)
    assert b["expires_at"] == NOW + timedelta(hours=24)
    assert b["reason"] and b["techniques"] == ["T1110.003"]
    evidence = json.loads(b["evidence"])
    assert evidence["attempts"] == 10 and evidence["accounts"] == 3
    assert {"findings", "findings_total"} <= evidence.keys()


def test_single_attacker_gets_an_address_block():
    plan = plan_for(spray(["203.0.113.5"]), [{C.SOURCE_IP: "203.0.113.5"}])
    assert blocks(plan).select("target_type", "target").rows() == [("ip", "203.0.113.5")]


def test_malicious_slash24_without_legit_users_becomes_a_cidr_block():
    ips = ["203.0.113.5", "203.0.113.6", "203.0.113.7"]
    plan = plan_for(spray(ips), [{C.SOURCE_IP: ip} for ip in ips])
    b = blocks(plan)
    assert b.select("target_type", "target").rows() == [("cidr", "203.0.113.0/24")]
    assert b.row(0, named=True)["collateral_accounts"] == 0


def test_prefix_with_a_legit_user_falls_back_to_addresses():
    ips = ["203.0.113.5", "203.0.113.6"]
    rows = [*spray(ips), ev("203.0.113.50", "alice", "success")]
    plan = plan_for(rows, [{C.SOURCE_IP: ip} for ip in ips])
    assert sorted(blocks(plan).get_column("target").to_list()) == ips
    assert blocks(plan).get_column("target_type").unique().to_list() == ["ip"]


def test_collateral_budget_allows_the_prefix():
    ips = ["203.0.113.5", "203.0.113.6"]
    rows = [*spray(ips), ev("203.0.113.50", "alice", "success", practitioner=True)]
    srcs = [{C.SOURCE_IP: ip} for ip in ips]
    strict = plan_for(rows, srcs, collateral_budget_accounts=1)
    assert blocks(strict).get_column("target_type").to_list() == ["ip", "ip"]
    loose = plan_for(rows, srcs, collateral_budget_accounts=1, collateral_budget_practitioners=1)
    b = blocks(loose).row(0, named=True)
    assert (b["target"], b["collateral_accounts"], b["collateral_practitioners"]) == ("203.0.113.0/24", 1, 1)


def test_cgnat_address_with_legit_users_is_not_blocked_accounts_restricted():
    cgnat = "198.51.100.200"  # a carrier's public NAT address (100.64/10 is its inside, never seen here)
    rows = [
        ev(cgnat, "alice", "success", asn=64501),
        ev(cgnat, "bob", "success", asn=64501, practitioner=True),
        ev(cgnat, "carol", "success", asn=64501),
        *[ev(cgnat, a, asn=64501, techniques=["T1110.004"]) for a in ("alice", "bob", "dave")],
    ]
    srcs = [{C.SOURCE_IP: cgnat, "shared_address": True, C.ASN: 64501, "legit_accounts": 3}]
    plan = plan_for(rows, srcs)
    assert blocks(plan).is_empty()
    restricted = by(plan, "restrict_account")
    assert set(restricted.get_column("target")) == {"alice", "bob"}  # dave: unseen, attacked once
    assert restricted.get_column("target")[0] == "bob"  # practitioners first
    bob = restricted.row(0, named=True)
    assert bob["allowed_networks"] == [
        "198.51.100.0/24",
        "AS64501",
    ]  # attacked through CGNAT: carrier AS kept
    assert bob["services"] == ["imap"] and bob["expires_at"] == NOW + timedelta(hours=72)
    monitor = by(plan, "monitor").filter(pl.col("target") == cgnat).row(0, named=True)
    assert "shared address" in monitor["reason"] and monitor["collateral_accounts"] == 3


def test_allowed_networks_include_the_accounts_own_asn_and_prefix():
    rows = [ev("198.51.100.9", "alice", "success", asn=64600), *spray(["203.0.113.5"], ("alice",))]
    plan = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], restrict_min_attempts=1)
    alice = by(plan, "restrict_account").row(0, named=True)
    assert alice["allowed_networks"] == ["198.51.100.0/24", "AS64600"]


@pytest.mark.parametrize("entry", ["203.0.113.0/24", "203.0.113.5", "AS64500", "203.0.0.0/16"])
def test_allowlisted_networks_are_never_blocked(entry):
    ips = ["203.0.113.5", "203.0.113.6", "203.0.113.7"]
    plan = plan_for(spray(ips), [{C.SOURCE_IP: ip} for ip in ips], allowlist=(entry,))
    targets = blocks(plan).get_column("target").to_list()
    assert "203.0.113.0/24" not in targets and "203.0.113.5" not in targets
    assert "AS64500" not in targets


def test_restrictions_keep_allowlisted_networks():
    rows = [ev("198.51.100.9", "alice", "success", asn=64600), *spray(["203.0.113.5"], ("alice",))]
    plan = plan_for(
        rows, [{C.SOURCE_IP: "203.0.113.5"}], allowlist=("192.0.2.0/24",), restrict_min_attempts=1
    )
    assert "192.0.2.0/24" in by(plan, "restrict_account").row(0, named=True)["allowed_networks"]


def test_bad_allowlist_entry_is_a_config_error():
    with pytest.raises(ConfigError, match="not-a-net"):
        plan_for(spray(["203.0.113.5"]), [{C.SOURCE_IP: "203.0.113.5"}], allowlist=("not-a-net",))


def test_asn_block_only_when_nobody_legit_is_behind_it():
    ips = ["203.0.113.5", "198.51.100.6", "192.0.2.7"]
    srcs = [{C.SOURCE_IP: ip, C.ASN: 64666} for ip in ips]
    rows = spray(ips, asn=64666)
    plan = plan_for(rows, srcs, widen_residential=True)
    assert blocks(plan).select("target_type", "target").rows() == [("asn", "AS64666")]
    with_legit = plan_for(
        [*rows, ev("192.0.2.200", "zoe", "success", asn=64666, service="pop3")], srcs, widen_residential=True
    )
    assert "asn" not in blocks(with_legit).get_column("target_type").to_list()


@pytest.mark.parametrize(("hosting", "asn_blocked"), [(True, True), (False, False)])
def test_asn_of_residential_attackers_is_not_blocked_by_default(hosting, asn_blocked):
    ips = ["203.0.113.5", "198.51.100.6", "192.0.2.7"]
    frame = world(spray(ips, asn=64666), [{C.SOURCE_IP: ip, C.ASN: 64666} for ip in ips])
    plan = recommend(hosted(frame) if hosting else frame, Detection(), Config(), NOW)
    assert ("AS64666" in blocks(plan).get_column("target").to_list()) is asn_blocked


def test_asn_needs_enough_attacking_addresses():
    ips = ["203.0.113.5", "198.51.100.6"]
    plan = plan_for(
        spray(ips, asn=64666), [{C.SOURCE_IP: ip, C.ASN: 64666} for ip in ips], widen_residential=True
    )
    assert "asn" not in blocks(plan).get_column("target_type").to_list()


def test_ipv6_slash64_block():
    ips = ["2001:db8:1:2::5", "2001:db8:1:2::6"]
    plan = plan_for(spray(ips), [{C.SOURCE_IP: ip} for ip in ips])
    assert blocks(plan).select("target_type", "target").rows() == [("cidr", "2001:db8:1:2::/64")]


def test_ipv6_slash48_when_several_slash64_attack():
    ips = ["2001:db8:1:2::5", "2001:db8:1:3::6"]
    plan = plan_for(spray(ips), [{C.SOURCE_IP: ip} for ip in ips])
    assert blocks(plan).select("target_type", "target").rows() == [("cidr", "2001:db8:1::/48")]


def test_ipv6_slash48_with_a_legit_user_narrows_to_slash64():
    ips = ["2001:db8:1:2::5", "2001:db8:1:2::6", "2001:db8:1:3::6"]
    rows = [*spray(ips), ev("2001:db8:1:3::99", "alice", "success")]
    plan = plan_for(rows, [{C.SOURCE_IP: ip} for ip in ips])
    assert sorted(blocks(plan).get_column("target").to_list()) == ["2001:db8:1:2::/64", "2001:db8:1:3::6"]


def hosted(frame):
    frame.events = frame.events.with_columns(pl.lit(True).alias(C.IS_HOSTING))
    return frame


@pytest.mark.parametrize(
    ("hosting", "widen_residential", "target"),
    [
        (True, False, "AS64500"),
        (False, True, "203.0.113.0/24"),
        (False, False, "203.0.113.5"),
    ],
)
def test_a_lone_campaign_address_widens_only_on_hosting_or_when_configured(
    hosting, widen_residential, target
):
    frame = world(spray(["203.0.113.5"], campaign="ps-1"), [{C.SOURCE_IP: "203.0.113.5", C.CAMPAIGN: "ps-1"}])
    cfg = Config().replace(plan={"widen_residential": widen_residential})
    plan = recommend(hosted(frame) if hosting else frame, Detection(), cfg, NOW)
    b = blocks(plan).row(0, named=True)
    assert b["target"] == target and "ps-1" in b["reason"]
    assert json.loads(b["evidence"])["campaigns"] == ["ps-1"]


def test_smtp_only_attack_is_scoped_to_smtp_and_submission():
    plan = plan_for(spray(["203.0.113.5"], service="submission"), [{C.SOURCE_IP: "203.0.113.5"}])
    assert blocks(plan).row(0, named=True)["services"] == ["smtp", "submission"]


def test_protocol_scoping_spares_legit_users_of_other_services():
    ip = "203.0.113.5"
    rows = [*spray([ip], service="smtp"), ev(ip, "alice", "success", service="imap")]
    plan = plan_for(rows, [{C.SOURCE_IP: ip, "legit_accounts": 1}])
    b = blocks(plan).row(0, named=True)
    assert (b["target"], b["services"], b["collateral_accounts"]) == (ip, ["smtp", "submission"], 0)


def test_compromised_account_reset_and_optional_lock():
    rows = [*spray(["203.0.113.5"], ("mallory",)), ev("203.0.113.5", "mallory", "success", risk=0.95)]
    accs = [
        {C.ACCOUNT: "mallory", "verdict": "compromised", C.RISK_SCORE: 0.9, "reasons": ["login after spray"]}
    ]
    plan = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], accs)
    assert by(plan, "reset_credentials").get_column("target").to_list() == ["mallory"]
    assert by(plan, "lock_account").is_empty()
    assert "mallory" not in by(plan, "restrict_account").get_column("target").to_list()
    locked = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], accs, lock_while_active=True)
    lock = by(locked, "lock_account").row(0, named=True)
    assert lock["target"] == "mallory" and lock["expires_at"] == NOW + timedelta(hours=24)


def test_attackers_success_does_not_count_as_collateral():
    rows = [*spray(["203.0.113.5"], ("mallory",)), ev("203.0.113.5", "mallory", "success", risk=0.95)]
    accs = [{C.ACCOUNT: "mallory", "verdict": "compromised", C.RISK_SCORE: 0.9}]
    plan = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], accs)
    assert blocks(plan).get_column("target").to_list() == ["203.0.113.5"]


def test_unknown_users_are_not_restricted():
    rows = [ev("203.0.113.5", "nobody", "unknown_user"), *spray(["203.0.113.5"], ("u0",))]
    rows.append(ev("198.51.100.9", "u0", "success"))
    plan = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], [{C.ACCOUNT: "u0"}], restrict_min_attempts=1)
    assert by(plan, "restrict_account").get_column("target").to_list() == ["u0"]


def known(account):
    return ev("198.51.100.9", account, "success", asn=64600)


@pytest.mark.parametrize(
    ("rows", "srcs", "restricted"),
    [
        # one attempt from a blocked address: monitored, not restricted
        ([known("u0"), ev("203.0.113.5", "u0")], [{C.SOURCE_IP: "203.0.113.5"}], []),
        # five attempts: it will come back from elsewhere
        ([known("u0"), *[ev("203.0.113.5", "u0") for _ in range(5)]], [{C.SOURCE_IP: "203.0.113.5"}], ["u0"]),
        # three attacking sources
        (
            [known("u0"), *[ev(f"203.0.11{i}.5", "u0") for i in range(3)]],
            [{C.SOURCE_IP: f"203.0.11{i}.5"} for i in range(3)],
            ["u0"],
        ),
        # an attacker that cannot be blocked (shared address), stuffing credentials
        (
            [known("u0"), ev("100.64.0.1", "u0", techniques=["T1110.004"])],
            [{C.SOURCE_IP: "100.64.0.1", "shared_address": True}],
            ["u0"],
        ),
        # ... but not when it only sprays one common password
        ([known("u0"), ev("100.64.0.1", "u0")], [{C.SOURCE_IP: "100.64.0.1", "shared_address": True}], []),
    ],
)
def test_targeted_accounts_restricted_when_exposed(rows, srcs, restricted):
    plan = plan_for(rows, srcs, restrict_light=False)
    assert by(plan, "restrict_account").get_column("target").to_list() == restricted
    if not restricted:
        assert "all blocked" in by(plan, "monitor").filter(pl.col("target") == "u0").item(0, "reason")


@pytest.mark.parametrize(("threshold", "restricted"), [(10, ["u0"]), (11, []), (0, [])])
def test_accounts_without_known_networks_restricted_only_when_attacked_hard(threshold, restricted):
    rows = [ev(f"203.0.113.{i}", "u0") for i in range(5) for _ in range(2)]
    plan = plan_for(
        rows, [{C.SOURCE_IP: f"203.0.113.{i}"} for i in range(5)], restrict_unseen_min_attempts=threshold
    )
    assert by(plan, "restrict_account").get_column("target").to_list() == restricted


def test_suspicious_entities_are_monitored():
    rows = [ev("198.51.100.3", "eve", "failure"), ev("198.51.100.3", "eve", "success")]
    plan = plan_for(
        rows,
        [{C.SOURCE_IP: "198.51.100.3", "verdict": "suspicious", C.RISK_SCORE: 0.3}],
        [{C.ACCOUNT: "eve", "verdict": "suspicious", C.RISK_SCORE: 0.3}],
    )
    assert set(plan.get_column("action")) == {"monitor"}
    assert set(plan.get_column("target")) == {"198.51.100.3", "eve"}


def test_findings_are_cited_in_evidence():
    findings = pl.DataFrame(
        {
            "finding_id": ["F1", "F2", "F3"],
            "entity_type": ["source_ip", "account", "source_ip"],
            "entity": ["203.0.113.5", "u0", "198.51.100.1"],
            "kind": ["attack", "attack", "attack"],
        }
    )
    rows = [*spray(["203.0.113.5"], ("u0",)), ev("198.51.100.9", "u0", "success")]
    plan = plan_for(
        rows, [{C.SOURCE_IP: "203.0.113.5"}], detection=Detection(findings=findings), restrict_min_attempts=1
    )
    assert json.loads(blocks(plan).row(0, named=True)["evidence"])["findings"] == ["F1"]
    assert json.loads(by(plan, "restrict_account").row(0, named=True)["evidence"])["findings"] == ["F2"]


def test_measure_ids_are_stable_and_order_is_deterministic():
    ips = ["203.0.113.5", "198.51.100.6"]
    a = plan_for(spray(ips), [{C.SOURCE_IP: ip} for ip in ips])
    b = plan_for(list(reversed(spray(ips))), [{C.SOURCE_IP: ip} for ip in reversed(ips)])
    assert a.equals(b)
    assert a.get_column("measure_id").n_unique() == a.height
    assert measure_id("block", "ip", "203.0.113.5", ["imap"]) == a.filter(
        pl.col("target") == "203.0.113.5"
    ).item(0, "measure_id")


def test_empty_world_gives_an_empty_plan():
    plan = plan_for([ev("198.51.100.9", "alice", "success")], [])
    assert plan.is_empty() and plan.schema == RECOMMENDATION_SCHEMA


def test_reopening_waves_order_and_summary():
    rows = [ev("198.51.100.9", a, "success") for a in ("doc", "doc2", "pat", "pat2", "mal")]
    rows += spray(["203.0.113.5"], ("doc2", "pat2"))
    accs = [
        {C.ACCOUNT: "doc", C.IS_PRACTITIONER: True},
        {C.ACCOUNT: "doc2", C.IS_PRACTITIONER: True, "verdict": "targeted", C.RISK_SCORE: 0.2},
        {C.ACCOUNT: "pat"},
        {C.ACCOUNT: "pat2", "verdict": "targeted", C.RISK_SCORE: 0.3},
        {C.ACCOUNT: "mal", "verdict": "compromised", C.RISK_SCORE: 0.9},
    ]
    plan = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], accs, shutdown=True)
    reopen = by(plan, "reopen")
    assert reopen.select("target", "wave").rows() == [
        ("doc", 1),
        ("doc2", 2),
        ("pat", 3),
        ("mal", 4),
        ("pat2", 4),
    ]
    assert "credential reset" in reopen.filter(pl.col("target") == "mal").item(0, "reason")
    summary = waves(plan)
    assert summary.get_column("accounts").to_list() == [1, 1, 1, 2]
    assert summary.get_column("practitioners").to_list() == [1, 1, 0, 0]
    assert summary.filter(pl.col("wave") == 4).item(0, "expected_compromised") == pytest.approx(1.2)
    assert by(plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], accs), "reopen").is_empty()


def test_hosting_prefix_with_legit_users_is_blocked_except_their_addresses():
    ips = ["51.210.5.9", "51.210.5.15"]
    rows = [*spray(ips), ev("51.210.5.114", "alice", "success"), ev("51.210.5.129", "bob", "success")]
    frame = world(rows, [{C.SOURCE_IP: ip} for ip in ips])
    frame.events = frame.events.with_columns(pl.lit(True).alias(C.IS_HOSTING))
    plan = recommend(frame, Detection(), Config(), NOW)
    b = blocks(plan).row(0, named=True)
    assert (b["target"], b["allowed_networks"], b["collateral_accounts"]) == (
        "51.210.5.0/24",
        ["51.210.5.114", "51.210.5.129"],
        0,
    )
    off = recommend(frame, Detection(), Config().replace(plan={"carve_max_addresses": 0}), NOW)
    assert blocks(off).get_column("target_type").to_list() == ["ip", "ip"]


def test_busy_suspicious_source_is_acted_on():
    rows = [ev("203.0.113.5", "u0") for _ in range(25)]
    src = [{C.SOURCE_IP: "203.0.113.5", "verdict": "suspicious", "failures": 25, C.RISK_SCORE: 0.45}]
    assert blocks(plan_for(rows, src)).get_column("target").to_list() == ["203.0.113.5"]
    assert blocks(plan_for(rows, src, act_on_suspicious_failures=0)).is_empty()


def test_history_counts_as_collateral_and_allowed_networks():
    ips = ["203.0.113.5", "198.51.100.6", "192.0.2.7"]
    rows = [*spray(ips, asn=64666), ev("198.51.100.9", "zoe", "success", asn=64600)]
    srcs = [{C.SOURCE_IP: ip, C.ASN: 64666} for ip in ips]
    history = pl.DataFrame({C.ACCOUNT: ["zoe", "u0"], "net": ["AS64666", "100.70.1.0/24"]})
    frame = world(rows, srcs)
    cfg = Config().replace(plan={"widen_residential": True})
    plan = recommend(frame, Detection(), cfg, NOW, known_networks=history)
    assert "asn" not in blocks(plan).get_column("target_type").to_list()
    without = recommend(frame, Detection(), cfg, NOW)
    assert blocks(without).get_column("target").to_list() == ["AS64666"]


def test_known_networks_from_history_table():
    from detector.recommend.history import known_networks

    hist = pl.DataFrame(
        {
            C.ACCOUNT: ["Alice", "alice", "alice", "bob"],
            "feature": ["prefix", "asn", "country", "asn"],
            "value": ["198.51.100.0/24", "64600", "FR", ""],
        }
    )
    assert known_networks(hist).rows() == [("alice", "198.51.100.0/24"), ("alice", "AS64600")]
    rows = [*[ev("203.0.113.5", "alice") for _ in range(5)], ev("192.0.2.9", "alice", "success", asn=64601)]
    plan = recommend(
        world(rows, [{C.SOURCE_IP: "203.0.113.5"}]),
        Detection(),
        Config(),
        NOW,
        known_networks=known_networks(hist),
    )
    assert by(plan, "restrict_account").item(0, "allowed_networks").to_list() == [
        "192.0.2.0/24",
        "198.51.100.0/24",
        "AS64600",
        "AS64601",
    ]


def test_no_carve_out_when_a_user_of_the_prefix_has_no_known_address():
    ips = ["51.210.5.9", "51.210.5.15"]
    rows = [*spray(ips), ev("51.210.5.114", "alice", "success")]
    frame = world(rows, [{C.SOURCE_IP: ip} for ip in ips])
    frame.events = frame.events.with_columns(pl.lit(True).alias(C.IS_HOSTING))
    history = pl.DataFrame({C.ACCOUNT: ["bob"], "net": ["51.210.5.0/24"]})
    plan = recommend(frame, Detection(), Config(), NOW, known_networks=history)
    assert blocks(plan).get_column("target_type").to_list() == ["ip", "ip"]
    assert all(None not in (n or []) for n in plan.get_column("allowed_networks").to_list())


def test_light_restriction_allows_own_and_mainstream_networks_on_every_service():
    plan = plan_for(*light_world())
    row = by(plan, "restrict_account").row(0, named=True)
    assert row["target"] == "u0"
    assert row["services"] == []
    assert row["allowed_networks"] == ["198.51.100.0/24", "AS64600", "AS64601"]


def test_light_restriction_off_is_a_monitor_row():
    plans = (
        plan_for(*light_world(), restrict_light=False),
        plan_for(*light_world(practitioner=True), restrict_light_practitioners=False),
    )
    for plan in plans:
        assert by(plan, "restrict_account").is_empty()
        assert "all blocked" in by(plan, "monitor").filter(pl.col("target") == "u0").item(0, "reason")


def test_practitioner_light_restriction_covers_smtp_auth_only():
    row = by(plan_for(*light_world(practitioner=True)), "restrict_account").row(0, named=True)
    assert row["target"] == "u0"
    assert row["services"] == ["smtp", "submission"]
    assert row["allowed_networks"] == ["198.51.100.0/24", "AS64600", "AS64601"]
    assert "SMTP AUTH only" in row["reason"]


@pytest.mark.parametrize(("sources", "mainstream"), [(2, True), (3, False)])
def test_practitioner_under_distributed_attack_gets_own_networks_only(sources, mainstream):
    rows, srcs = light_world(practitioner=True)
    bots = [f"192.0.2.{i}" for i in range(10, 10 + sources)]
    rows += [ev(ip, "u0", practitioner=True) for ip in bots for _ in range(3)]
    srcs += [{C.SOURCE_IP: ip} for ip in bots]
    row = by(plan_for(rows, srcs, restrict_distributed_sources=4), "restrict_account").row(0, named=True)
    assert ("AS64601" in row["allowed_networks"]) is mainstream
    assert "198.51.100.0/24" in row["allowed_networks"]


def test_practitioner_restriction_allows_mainstream_networks():
    rows, srcs = light_world(practitioner=True)
    rows += [ev("203.0.113.5", "u0", practitioner=True) for _ in range(5)]
    row = by(plan_for(rows, srcs), "restrict_account").row(0, named=True)
    assert row["allowed_networks"] == ["198.51.100.0/24", "AS64600", "AS64601"]
    assert row["services"] == ["imap", "smtp", "submission"]


@pytest.mark.parametrize(
    ("share", "expected"), [(0.02, ["AS64601", "AS64602"]), (0.5, ["AS64602"]), (0.0, [])]
)
def test_mainstream_networks_are_popular_non_anonymous_unblocked_as_numbers(share, expected):
    from detector.recommend.accounts import mainstream_networks

    legit = pl.DataFrame(
        {
            C.ACCOUNT: ["a", "b", "c", "a", "b", "c", "d"],
            C.ASN: [64601, 64602, 64602, 64666, 64666, 64666, 64700],
        }
    )
    blocks_ = pl.DataFrame({"level": ["asn"], "key": ["AS64700"]})
    assert mainstream_networks(legit, [64666], share, blocks_) == expected


@pytest.mark.parametrize(("verdict", "reset"), [("compromised", ["u0"]), ("targeted", []), ("clean", [])])
def test_the_plan_resets_exactly_the_accounts_scoring_calls_compromised(verdict, reset):
    """Takeovers scoring would explain away are scoring's rule (verdicts.takeover_risk), so the
    plan and accounts.parquet agree on who is compromised."""
    rows = [
        ev("198.51.100.9", "u0", "success", asn=64600),
        ev("203.0.113.5", "u0", "success", risk=0.95),
        *spray(["203.0.113.5"], ("u1", "u2")),
    ]
    accs = [{C.ACCOUNT: "u0", "verdict": verdict}, {C.ACCOUNT: "u1"}, {C.ACCOUNT: "u2"}]
    plan = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5", "legit_accounts": 0}], accs)
    assert by(plan, "reset_credentials").get_column("target").to_list() == reset


def test_anonymous_history_does_not_protect_a_hosting_as():
    ips = ["45.140.1.5", "45.140.2.6", "45.140.3.7"]
    rows = spray(ips, asn=64666)
    frame = world(rows, [{C.SOURCE_IP: ip, C.ASN: 64666} for ip in ips])
    frame.events = frame.events.with_columns(pl.lit(True).alias(C.IS_HOSTING))
    history = pl.DataFrame({C.ACCOUNT: ["zoe"], "net": ["AS64666"]})
    plan = recommend(frame, Detection(), Config(), NOW, known_networks=history)
    assert blocks(plan).get_column("target").to_list() == ["AS64666"]
    tonight = [*rows, ev("45.140.9.9", "zoe", "success", asn=64666)]
    frame = world(tonight, [{C.SOURCE_IP: ip, C.ASN: 64666} for ip in ips])
    frame.events = frame.events.with_columns(pl.lit(True).alias(C.IS_HOSTING))
    plan = recommend(frame, Detection(), Config(), NOW, known_networks=history)
    assert "AS64666" not in blocks(plan).get_column("target").to_list()


def test_vpn_exits_customers_use_are_not_blocked_their_targets_are_restricted():
    rows = [
        ev("185.213.1.10", "u0", techniques=["T1110.004"]),
        ev("185.213.2.11", "v0", "success", asn=64500),
        ev("198.51.100.9", "u0", "success", asn=64600),
    ]
    frame = world(rows, [{C.SOURCE_IP: "185.213.1.10"}])
    frame.events = frame.events.with_columns(pl.col(C.SOURCE_IP).str.starts_with("185.213.").alias(C.IS_VPN))
    plan = recommend(frame, Detection(), Config(), NOW)
    assert blocks(plan).is_empty()
    assert "VPN service" in by(plan, "monitor").filter(pl.col("target") == "185.213.1.10").item(0, "reason")
    assert by(plan, "restrict_account").get_column("target").to_list() == ["u0"]
    alone = world(rows[:1] + rows[2:], [{C.SOURCE_IP: "185.213.1.10"}])
    alone.events = alone.events.with_columns(pl.col(C.SOURCE_IP).str.starts_with("185.213.").alias(C.IS_VPN))
    assert blocks(recommend(alone, Detection(), Config(), NOW)).get_column("target").to_list() == ["AS64500"]


def test_light_restriction_of_an_account_never_seen_allows_only_the_mainstream_networks():
    rows = [ev("192.0.2.20", "v0", "success", asn=64601), ev("203.0.113.5", "u0")]
    plan = plan_for(rows, [{C.SOURCE_IP: "203.0.113.5"}], allowlist=["198.18.0.0/15"])
    row = by(plan, "restrict_account").row(0, named=True)
    assert (row["target"], row["allowed_networks"]) == ("u0", ["198.18.0.0/15", "AS64601"])
    assert "no legitimate login seen" in row["reason"]
