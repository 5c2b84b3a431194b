"""Plan measures from the fresh-world study (issue 15): a light restriction for an account seen on
a network new to it, SMTP AUTH from its own networks only (opt-in), practitioners' home lines."""

import polars as pl
import pytest

from detector.config import Config
from detector.recommend import recommend
from detector.recommend.accounts import new_network_accounts
from detector.schema import C
from tests.recommend_frames import NOW, Detection, ev, light_world, world


def by(plan, action):
    return plan.filter(pl.col("action") == action)


def plan_with_history(rows, srcs, history, **plan_cfg):
    cfg = Config().replace(plan=plan_cfg) if plan_cfg else Config()
    return recommend(world(rows, srcs), Detection(), cfg, NOW, known_networks=history)


HISTORY = pl.DataFrame(
    {C.ACCOUNT: ["alice", "alice", "bob"], "net": ["198.51.100.0/24", "AS64600", "AS64601"]}
)


@pytest.mark.parametrize(
    ("account", "asn", "new"),
    [
        ("alice", 64600, False),  # her usual AS
        ("alice", 64700, True),  # an AS she never used
        ("carol", 64700, False),  # no earlier night on record: nothing is "new"
        ("ALICE", 64700, False),  # the plan's accounts are lower-cased before this point
    ],
)
def test_new_network_accounts(account, asn, new):
    legit = pl.DataFrame({C.ACCOUNT: [account], C.ASN: [asn]}, schema={C.ACCOUNT: pl.String, C.ASN: pl.Int64})
    assert new_network_accounts(legit, HISTORY) == ([account] if new else [])


def test_null_asn_is_never_new():
    legit = pl.DataFrame(
        {C.ACCOUNT: ["alice"], C.ASN: [None]}, schema={C.ACCOUNT: pl.String, C.ASN: pl.Int64}
    )
    assert new_network_accounts(legit, HISTORY) == []


def quiet_world(asn, practitioner=False):
    """alice logs in once, nobody attacks her; v0 makes AS64601 a mainstream network."""
    rows = [
        ev("192.0.2.9", "alice", "success", asn=asn, practitioner=practitioner),
        ev("192.0.2.20", "v0", "success", asn=64601),
        ev("203.0.113.5", "u0"),
    ]
    return rows, [{C.SOURCE_IP: "203.0.113.5"}]


@pytest.mark.parametrize(("asn", "restricted"), [(64700, True), (64600, False)])
def test_a_login_from_a_new_network_gets_a_light_restriction(asn, restricted):
    plan = plan_with_history(*quiet_world(asn), HISTORY)
    rows = by(plan, "restrict_account").filter(pl.col("target") == "alice").sort("services")
    assert rows.height == 2 * int(restricted)
    if restricted:
        reading, sending = rows.rows(named=True)
        own = {"198.51.100.0/24", "AS64600", "192.0.2.0/24", "AS64700"}  # tonight's new one too
        assert reading["services"] == ["imap", "managesieve", "pop3", "webmail"]
        assert set(reading["allowed_networks"]) == own | {"AS64601"}  # and the mainstream ones
        assert "network new to it" in reading["reason"]
        assert sending["services"] == ["smtp", "submission"]
        assert set(sending["allowed_networks"]) == own  # a takeover's burst goes out from elsewhere


def test_new_network_restriction_off_and_without_history():
    off = plan_with_history(*quiet_world(64700), HISTORY, restrict_new_network=False)
    assert by(off, "restrict_account").filter(pl.col("target") == "alice").is_empty()
    plan = recommend(world(*quiet_world(64700)), Detection(), Config(), NOW)
    assert by(plan, "restrict_account").filter(pl.col("target") == "alice").is_empty()


def test_a_practitioner_on_a_new_network_is_restricted_on_smtp_auth_only():
    plan = plan_with_history(*quiet_world(64700, practitioner=True), HISTORY)
    rows = by(plan, "restrict_account").filter(pl.col("target") == "alice")
    assert rows.height == 1
    row = rows.row(0, named=True)
    assert row["services"] == ["smtp", "submission"]
    own = {"198.51.100.0/24", "AS64600", "192.0.2.0/24", "AS64700"}
    assert set(row["allowed_networks"]) == own | {"AS64601"}


def test_light_restriction_smtp_from_own_networks_only_when_configured():
    cfg = Config().replace(plan={"restrict_light_smtp_own": True})
    plan = by(recommend(world(*light_world()), Detection(), cfg, NOW), "restrict_account").sort("services")
    assert plan.get_column("services").to_list() == [
        ["imap", "managesieve", "pop3", "webmail"],
        ["smtp", "submission"],
    ]
    nets = plan.get_column("allowed_networks").to_list()
    assert nets[0] == ["198.51.100.0/24", "AS64600", "AS64601"]  # reading: mainstream too
    assert nets[1] == ["198.51.100.0/24", "AS64600"]  # sending: its own networks only
    pract = by(recommend(world(*light_world(True)), Detection(), cfg, NOW), "restrict_account")
    assert pract.height == 1
    assert pract.row(0, named=True)["allowed_networks"] == ["198.51.100.0/24", "AS64600"]


def test_a_practitioners_login_counts_as_collateral_on_every_service():
    ip = "203.0.113.5"
    attack = [ev(ip, a, service="smtp") for a in ("u0", "u1", "u2")]
    for practitioner, blocked in ((False, True), (True, False)):
        rows = [*attack, ev(ip, "alice", "success", service="imap", practitioner=practitioner)]
        plan = recommend(world(rows, [{C.SOURCE_IP: ip, "legit_accounts": 1}]), Detection(), Config(), NOW)
        assert (by(plan, "block").height == 1) is blocked


def home_line_world(practitioner):
    """A stuffing proxy on alice's home line: scoring counts no legitimate user on the address (her
    login there scored 0.3) and calls it malicious."""
    ip = "198.51.100.9"
    rows = [
        ev(ip, "u0", campaign="cs-1"),
        ev(ip, "u1", campaign="cs-1"),
        ev(ip, "alice", "success", practitioner=practitioner, risk=0.3, asn=64600),
    ]
    return rows, [{C.SOURCE_IP: ip, "legit_accounts": 0}]


@pytest.mark.parametrize(("practitioner", "blocked"), [(True, False), (False, True)])
def test_a_practitioners_home_line_is_not_blocked(practitioner, blocked):
    plan = recommend(world(*home_line_world(practitioner)), Detection(), Config(), NOW)
    assert (by(plan, "block").height > 0) is blocked
    if not blocked:  # the proxy's targets are protected instead
        assert {"u0", "u1"} <= set(by(plan, "restrict_account").get_column("target").to_list())
