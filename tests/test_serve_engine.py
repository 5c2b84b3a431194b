"""The login-time decision (detector.serve.engine): tiny plans, one request each."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import ServeConfig
from detector.serve.engine import Control, Engine, login_request, parse_address
from detector.serve.index import build_index
from detector.serve.windows import Counter, Expiring
from tests.serve_plans import NOW, measure, plan

T = NOW.timestamp()
ALICE = "alice@example.org"

PLAN = plan(
    [
        measure("block", "203.0.113.7", services=("imap",)),
        measure("block", "198.51.100.0/24", allowed=["198.51.100.10"]),
        measure("block", "2001:db8:1::/48"),
        measure("block", "AS64500"),
        measure("block", "192.0.2.1", expires=NOW),
        measure("lock_account", "locked@example.org"),
        measure("restrict_account", ALICE, services=("imap", "smtp"), allowed=["100.64.7.0/24", "AS64501"]),
        measure("reset_credentials", "bob@example.org"),
        measure("reopen", "doc@example.org", wave=1),
        measure("reopen", "late@example.org", wave=3),
    ]
)
ASNS = {"8.8.8.8": 64500, "9.9.9.9": 64501}


def asn_of(ip):
    return ASNS.get(str(ip))


def engine(**kwargs) -> Engine:
    return Engine(build_index(PLAN, now=NOW), kwargs.pop("cfg", ServeConfig()), asn_of, **kwargs)


def ask(
    e: Engine, login="carol@example.org", remote="100.64.0.1", protocol="imap", pwhash=None, sending=False
):
    fields = {"login": login, "remote": remote, "protocol": protocol}
    if pwhash is not None:
        fields["pwhash"] = pwhash
    return e.evaluate(login_request(fields), T, sending=sending)


@pytest.mark.parametrize(
    ("login", "remote", "protocol", "rule"),
    [
        ("carol@example.org", "100.64.0.1", "imap", "allow"),
        ("carol@example.org", "203.0.113.7", "imap", "block"),
        ("carol@example.org", "203.0.113.7", "pop3", "allow"),  # the block is for IMAP only
        ("carol@example.org", "198.51.100.99", "pop3", "block"),  # all services
        ("carol@example.org", "198.51.100.10", "imap", "allow"),  # a user spared inside the block
        ("carol@example.org", "2001:db8:1:2::5", "imap", "block"),
        ("carol@example.org", "::ffff:203.0.113.7", "imap", "block"),  # IPv4-mapped
        ("carol@example.org", "8.8.8.8", "imap", "block"),  # AS64500
        ("carol@example.org", "192.0.2.1", "imap", "allow"),  # expired at NOW
        ("locked@example.org", "100.64.0.1", "pop3", "lock"),
        ("LOCKED@Example.ORG", "100.64.0.1", "pop3", "lock"),  # case
        ("locked", "100.64.0.1", "pop3", "lock"),  # an unambiguous local part
        (ALICE, "100.64.0.1", "imap", "restrict"),
        (ALICE, "100.64.7.9", "imap", "allow"),  # her own /24
        (ALICE, "9.9.9.9", "imap", "allow"),  # her AS
        (ALICE, "10.1.2.3", "imap", "allow"),  # private: the provider's own
        (ALICE, "100.64.0.1", "pop3", "allow"),  # restricted on imap and smtp only
        (ALICE, "100.64.0.1", "submission", "restrict"),  # SMTP AUTH covers both names
        (ALICE, "100.64.0.1", "smtp", "restrict"),
        (ALICE, "100.64.0.1", "sieve", "allow"),
        ("bob@example.org", "100.64.0.1", "imap", "allow"),  # a reset alone never locks the owner out
    ],
)
def test_plan_rules(login, remote, protocol, rule):
    assert ask(engine(), login, remote, protocol).rule == rule


@pytest.mark.parametrize(
    ("login", "remote", "open_wave", "rule"),
    [
        ("doc@example.org", "100.64.0.1", 1, "allow"),
        ("late@example.org", "100.64.0.1", 1, "reopen_wave"),
        ("late@example.org", "100.64.0.1", 3, "allow"),
        ("late@example.org", "10.0.0.1", 1, "allow"),  # internal access was never shut
        ("late@example.org", "100.64.0.1", None, "allow"),  # no wave given: waves not enforced
        (ALICE, "100.64.7.1", 2, "reopen_wave"),  # no reopen row: the last wave
    ],
)
def test_reopening_waves(login, remote, open_wave, rule):
    assert ask(engine(control=Control(open_wave=open_wave)), login, remote).rule == rule


def report(e: Engine, login, remote, pwhash, success=True, at=T):
    fields = {"login": login, "remote": remote, "protocol": "imap", "pwhash": pwhash}
    e.report(login_request(fields), success, False, at)


def test_reset_refuses_the_stolen_password_once_the_owner_has_a_new_one():
    e = engine()
    bob = "bob@example.org"
    report(e, bob, "100.64.0.1", "aaa")  # the password in use when the plan named him: the stolen one
    assert ask(e, bob, pwhash="aaa").rule == "allow"  # not changed yet: the owner still logs in
    assert ask(e, bob, pwhash="aaa", sending=True).rule == "compromised"
    report(e, bob, "100.64.0.1", "bbb")  # a success with another hash: the owner changed it
    assert ask(e, bob, pwhash="aaa").rule == "stolen_password"
    assert ask(e, bob, pwhash="bbb").rule == "allow"
    assert ask(e, bob, pwhash="bbb", sending=True).rule == "allow"
    assert e.dirty


def test_failed_logins_teach_nothing_about_passwords():
    e = engine()
    report(e, "bob@example.org", "100.64.0.1", "aaa", success=False)
    report(e, "bob@example.org", "100.64.0.1", "bbb", success=False)
    assert "bob@example.org" not in e.resets


def test_operators_word_ends_the_sending_refusal():
    e = engine(control=Control(password_changed=frozenset({"bob@example.org"})))
    assert ask(e, "bob@example.org", sending=True).rule == "allow"
    report(e, "bob@example.org", "100.64.0.1", "ccc")  # already the new password: not learnt as stolen
    assert ask(e, "bob@example.org", pwhash="ccc").rule == "allow"


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (9, 0), (10, 2), (19, 2), (20, 4), (200, 15)],
)
def test_source_tarpit_grows_with_failures(failures, seconds):
    e = engine(cfg=ServeConfig(source_failures=10, source_accounts=0, prefix_failures=0, account_failures=0))
    for _ in range(failures):
        report(e, "u@example.org", "100.64.0.1", "x", success=False)
    d = ask(e)
    assert d.status == seconds
    assert d.rule == ("tarpit_source" if seconds else "allow")


@pytest.mark.parametrize(("accounts", "rule"), [(4, "allow"), (5, "tarpit_source_accounts")])
def test_distinct_accounts_from_one_address(accounts, rule):
    e = engine(cfg=ServeConfig(prefix_failures=0, account_failures=0))
    for i in range(accounts):
        for _ in range(3):  # retries on one account count once
            report(e, f"u{i}@example.org", "100.64.0.1", "x", success=False)
    assert ask(e).rule == rule


def test_one_account_retrying_does_not_tarpit_its_address():
    e = engine(cfg=ServeConfig(prefix_failures=0, account_failures=0))
    for _ in range(19):
        report(e, "phone@example.org", "100.64.0.1", "old", success=False)
    assert ask(e).rule == "allow"


def test_prefix_tarpit_catches_a_wave_spread_over_addresses():
    e = engine(cfg=ServeConfig(source_failures=0, source_accounts=0, account_failures=0, prefix_failures=5))
    for i in range(5):
        report(e, f"u{i}@example.org", f"100.64.9.{i}", "x", success=False)
    assert ask(e, remote="100.64.9.200").rule == "tarpit_prefix"
    assert ask(e, remote="100.64.10.1").rule == "allow"


def test_account_tarpit_spares_the_owners_recent_address():
    e = engine(cfg=ServeConfig(source_failures=0, source_accounts=0, prefix_failures=0, account_failures=3))
    report(e, "dan@example.org", "100.64.5.5", "h")  # the owner
    for i in range(3):
        report(e, "dan@example.org", f"100.65.{i}.1", "x", success=False)
    assert ask(e, "dan@example.org", "100.66.0.1").rule == "tarpit_account"
    assert ask(e, "dan@example.org", "100.64.5.5").rule == "allow"


def test_reject_threshold_is_off_by_default_and_refuses_when_set():
    for cfg, rule in (
        (ServeConfig(source_failures=10, source_accounts=0), "tarpit_source"),
        (ServeConfig(source_failures=10, source_accounts=0, reject_source_failures=12), "reject_source"),
    ):
        e = engine(cfg=cfg)
        for i in range(12):
            report(e, f"u{i}@example.org", "100.64.0.1", "x", success=False)
        assert ask(e).rule == rule


def test_counters_forget_after_the_window():
    e = engine(cfg=ServeConfig(window_seconds=60, bucket_seconds=10, prefix_failures=0, account_failures=0))
    for i in range(10):
        report(e, f"u{i}@example.org", "100.64.0.1", "x", success=False)
    assert ask(e).rule == "tarpit_source_accounts"
    later = login_request({"login": "carol@example.org", "remote": "100.64.0.1", "protocol": "imap"})
    assert e.evaluate(later, T + 71).rule == "allow"
    e.sweep(T + 71)
    assert len(e.by_source) == len(e.by_source_accounts) == len(e.failed_pairs) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"login": "a\nb@example.org", "remote": "1.2.3.4"},
        {"login": "x" * 400, "remote": "1.2.3.4"},
        {"login": ["locked@example.org"], "remote": "1.2.3.4"},
        {"login": "locked@example.org\u2028", "remote": "1.2.3.4"},
        {"login": 7, "remote": 7, "protocol": 7, "pwhash": 7},
    ],
)
def test_hostile_logins_are_dropped(fields):
    assert login_request(fields).login is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("fe80::1%eth0", None),
        ("203.0.113.7/24", None),
        ("203.0.113.256", None),
        ("", None),
        ("1" * 100, None),
        (None, None),
    ],
)
def test_addresses_are_validated(text, expected):
    ip = parse_address(text)
    assert (str(ip) if ip else None) == expected


@pytest.mark.parametrize(("pwhash", "kept"), [("0aF3", "0af3"), ("zz", None), ("a" * 200, None), ("", None)])
def test_password_hashes_are_hex_only(pwhash, kept):
    assert login_request({"pwhash": pwhash}).pwhash == kept


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["login", "remote", "protocol", "pwhash", "success", "x"]),
        JSONISH | st.sampled_from(["locked@example.org", "203.0.113.7", "imap", "abc", "::1"]),
    ),
    st.booleans(),
)
def test_any_request_gets_an_answer(fields, sending):
    e = engine()
    req = login_request(fields)
    d = e.evaluate(req, T, sending=sending)
    assert d.status == -1 or 0 <= d.status <= e.cfg.tarpit_max_seconds
    e.report(req, bool(fields.get("success")), False, T)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=3000), max_size=60), st.integers(min_value=0, max_value=4000)
)
def test_counter_counts_the_events_in_its_window(times, at):
    c = Counter(window=600, bucket=60, max_keys=10)
    for t in sorted(times):
        c.add("k", t)
    now = max([at, *times])
    first_bucket = now // 60 - 10
    assert c.count("k", now) == sum(1 for t in times if t // 60 > first_bucket)


def test_tables_are_bounded():
    c = Counter(window=600, bucket=60, max_keys=2)
    for k in "abc":
        c.add(k, 0)
    assert len(c) == 2 and c.dropped == 1 and c.count("c", 0) == 0
    x = Expiring(ttl=10, max_keys=1)
    x.touch("a", 0)
    x.touch("b", 0)
    assert x.recent("a", 5) and not x.recent("b", 5) and not x.recent("a", 10)


def test_the_index_keeps_only_measures_in_force():
    index = build_index(PLAN, now=NOW)
    assert index.counts == {
        "block": 4,
        "lock_account": 1,
        "restrict_account": 1,
        "reset_credentials": 1,
        "reopen": 2,
    }
    assert index.max_wave == 3
    ip = ipaddress.ip_address("198.51.100.10")
    assert index.blocked(ip, None, ("imap",), T) is None


def test_asn_lookup_from_the_sample_database():
    from pathlib import Path

    import maxminddb

    from detector.serve.service import asn_lookup

    geoip = Path(__file__).resolve().parents[1] / "data" / "samples" / "geoip"
    with maxminddb.open_database(str(geoip / "GeoLite2-ASN.mmdb")) as reader:
        network, record = next(iter(reader))
    asn_of = asn_lookup(geoip)
    assert asn_of(network.network_address) == record["autonomous_system_number"]
    e = Engine(
        build_index(plan([measure("block", f"AS{record['autonomous_system_number']}")]), now=NOW),
        asn_of=asn_of,
    )
    req = login_request(
        {"login": "x@example.org", "remote": str(network.network_address), "protocol": "imap"}
    )
    assert e.evaluate(req, T).rule == "block"
    assert asn_lookup(None) is None


def test_a_plan_without_the_reset_forgets_what_was_learnt():
    e = engine()
    report(e, "bob@example.org", "100.64.0.1", "aaa")
    report(e, "bob@example.org", "100.64.0.1", "bbb")
    e.dirty = False
    e.index = build_index(plan([measure("block", "203.0.113.7")]), now=NOW)
    e.prune_resets()
    assert e.resets == {} and e.dirty
    e.index = build_index(PLAN, now=NOW)  # reset again on a later night: learnt afresh
    report(e, "bob@example.org", "100.64.0.1", "bbb")
    assert e.resets["bob@example.org"].stolen == "bbb"
    assert ask(e, "bob@example.org", sending=True).rule == "compromised"


def test_an_owner_behind_a_shared_address_is_not_slowed_for_its_neighbours():
    e = engine()
    report(e, "nurse@example.org", "100.64.8.8", "h")  # the owner logs in from the hospital's NAT
    for i in range(10):
        report(e, f"u{i}@example.org", "100.64.8.8", "x", success=False)  # neighbours mistype
    assert ask(e, "nurse@example.org", "100.64.8.8").rule == "allow"
    assert ask(e, "other@example.org", "100.64.8.8").rule == "tarpit_source_accounts"
