"""The plan's guards: no block wider than the configured prefix, none touching a never-block
network, none naming anything but a valid address, CIDR or AS number, whatever the input."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.config import Config, PlanConfig
from detector.recommend import recommend, scope
from detector.recommend.guard import RESERVED, Guard, shown
from detector.schema import C
from tests.recommend_frames import NOW, Detection, ev, world

PARTNER = "198.51.100.64/26"


def forged(ip: str, account: str, *, prefix: str | None = None, asn: int = 64500, **kw) -> dict:
    """An attack event whose address is whatever a parser let through (``ev`` needs a real one)."""
    row = ev("192.0.2.1", account, asn=asn, **kw)
    return {**row, C.SOURCE_IP: ip, C.PREFIX: prefix, C.PREFIX48: None}


def spray(ip: str, *, prefix: str | None = None, n: int = 4, **kw) -> list[dict]:
    return [forged(ip, f"user{i}@example.org", prefix=prefix, **kw) for i in range(n)]


def plan_of(
    rows: list[dict], srcs: list[dict], warnings: list[str] | None = None, **plan_cfg
) -> pl.DataFrame:
    cfg = Config().replace(plan=plan_cfg) if plan_cfg else Config()
    scores = world(rows, [{**s, C.SOURCE_IP: "192.0.2.1", C.PREFIX: None} for s in srcs])
    prefixes = {r[C.SOURCE_IP]: r[C.PREFIX] for r in rows}  # as enrichment cut the events' addresses
    forged_sources = scores.sources.with_columns(
        pl.Series(C.SOURCE_IP, [s[C.SOURCE_IP] for s in srcs], dtype=pl.String),
        pl.Series(C.PREFIX, [s.get(C.PREFIX, prefixes.get(s[C.SOURCE_IP])) for s in srcs], dtype=pl.String),
    )
    scores = dataclasses.replace(scores, sources=forged_sources)
    return recommend(scores, Detection(), cfg, NOW, warnings=warnings)


def block_targets(plan: pl.DataFrame) -> list[str]:
    return plan.filter(pl.col("action") == "block").get_column("target").to_list()


@pytest.mark.parametrize(
    ("address", "prefix", "why"),
    [
        ("0.0.0.0/0", "0.0.0.0/0", "not a single address"),
        ("10.0.0.0/8", "10.0.0.0/8", "not a single address"),
        ("10.9.9.9", "10.9.9.0/24", "reserved network 10.0.0.0/8"),
        ("127.0.0.1", "127.0.0.0/24", "reserved network 127.0.0.0/8"),
        ("100.64.7.7", "100.64.7.0/24", "reserved network 100.64.0.0/10"),
        ("169.254.1.1", "169.254.1.0/24", "reserved network 169.254.0.0/16"),
        ("172.20.1.1", "172.20.1.0/24", "reserved network 172.16.0.0/12"),
        ("192.168.1.1", "192.168.1.0/24", "reserved network 192.168.0.0/16"),
        ("224.0.0.1", "224.0.0.0/24", "reserved network 224.0.0.0/4"),
        ("255.255.255.255", "255.255.255.0/24", "reserved network 240.0.0.0/4"),
        ("0.0.0.0", "0.0.0.0/24", "reserved network 0.0.0.0/8"),
        ("::", None, "reserved network ::/128"),
        ("::1", None, "reserved network ::1/128"),
        ("fd00::5", "fd00::/64", "reserved network fc00::/7"),
        ("fe80::1", "fe80::/64", "reserved network fe80::/10"),
        ("ff02::1", "ff02::/64", "reserved network ff00::/8"),
        ("::ffff:10.0.0.1", None, "reserved network 10.0.0.0/8"),
        ("9.9.9.8>", "9.9.9.0/24", "not a valid address"),
        ("9.9.9.8 rip=10.0.0.1", None, "not a valid address"),
        ("2001:db8::1%eth0", None, "not a valid address"),
        ("9.9.9.8\x1b[2J", None, "not a valid address"),
        ("198.51.100.70", "198.51.100.0/24", f"allow-listed network {PARTNER}"),
    ],
)
def test_a_forged_or_protected_source_is_never_blocked_and_the_guard_says_so(address, prefix, why):
    warnings: list[str] = []
    rows = spray(address, prefix=prefix) + spray("203.0.113.9", prefix="203.0.113.0/24", asn=64510)
    srcs = [{C.SOURCE_IP: address, C.PREFIX: prefix}, {C.SOURCE_IP: "203.0.113.9", C.ASN: 64510}]
    plan = plan_of(rows, srcs, warnings, allowlist=(PARTNER,))
    assert block_targets(plan) == ["203.0.113.9"]  # the real attacker is still blocked
    fired = [w for w in warnings if why in w]
    assert len(fired) == 1 and shown(address) in fired[0], warnings
    assert all(w.isprintable() and w.isascii() for w in warnings)
    monitor = plan.filter((pl.col("action") == "monitor") & (pl.col("target") == address))
    assert monitor.height == 1 and why in monitor.item(0, "reason")


@pytest.mark.parametrize(
    "address", ["192.0.2.7", "198.51.100.7", "203.0.113.7", "2001:db8::7", "8.8.8.8", "2a01:e0a::1"]
)
def test_documentation_and_public_ranges_stay_blockable(address):
    warnings: list[str] = []
    plan = plan_of(spray(address, prefix=None), [{C.SOURCE_IP: address}], warnings)
    assert block_targets(plan) == [address] and warnings == []


def test_a_prefix_holding_a_partner_network_falls_back_to_its_addresses():
    """A /24 of three attackers holds the partner's /26 (none of them in it): the /24 would take the
    protected part, so the attackers are blocked one by one."""
    ips = ["198.51.100.5", "198.51.100.6", "198.51.100.7"]
    rows = [r for ip in ips for r in spray(ip, prefix="198.51.100.0/24")]
    warnings: list[str] = []
    plan = plan_of(rows, [{C.SOURCE_IP: ip} for ip in ips], warnings, allowlist=(PARTNER,))
    assert sorted(block_targets(plan)) == ips
    assert any("198.51.100.0/24" in w and PARTNER in w for w in warnings)
    without = plan_of(rows, [{C.SOURCE_IP: ip} for ip in ips])
    assert block_targets(without) == ["198.51.100.0/24"]  # the guard, not something else, narrowed it


@pytest.mark.parametrize(
    ("widest", "expected"), [(16, ["203.0.113.0/24"]), (24, ["203.0.113.0/24"]), (25, None)]
)
def test_no_block_wider_than_the_configured_prefix(widest, expected):
    ips = ["203.0.113.5", "203.0.113.6", "203.0.113.7"]
    rows = [r for ip in ips for r in spray(ip, prefix="203.0.113.0/24")]
    plan = plan_of(rows, [{C.SOURCE_IP: ip} for ip in ips], widest_block_v4=widest)
    assert sorted(block_targets(plan)) == (expected or ips)


def test_the_finished_plan_is_checked_whatever_built_its_blocks(monkeypatch):
    """Should scoping ever propose a forbidden block, the last check drops it and warns."""
    real = scope.choose_blocks

    def broken(*args, **kwargs):
        s = real(*args, **kwargs)
        bad = pl.DataFrame(
            {
                scope.LEVEL: ["prefix", "prefix", "ip", "asn"],
                scope.KEY: ["0.0.0.0/0", "10.0.0.0/8", "9.9.9.8>", "AS64500 x"],
                scope.SERVICES: [[], [], [], []],
                scope.SOURCES: [["203.0.113.9"]] * 4,
                scope.COLLATERAL: [0] * 4,
                scope.COLLATERAL_PRACT: [0] * 4,
                scope.EXCEPT: [[], [], [], []],
                scope.COLLATERAL_LIST: [[], [], [], []],
            },
            schema=scope.BLOCK_SCHEMA,
        )
        return scope.Scoping(blocks=pl.concat([s.blocks, bad]), unblocked=s.unblocked, refused=s.refused)

    monkeypatch.setattr(scope, "choose_blocks", broken)
    warnings: list[str] = []
    plan = plan_of(spray("203.0.113.9", prefix="203.0.113.0/24"), [{C.SOURCE_IP: "203.0.113.9"}], warnings)
    assert block_targets(plan) == ["203.0.113.9"]
    text = " ".join(warnings)
    assert all(t in text for t in ("0.0.0.0/0", "10.0.0.0/8", "9.9.9.8>", "AS64500 x")), warnings


def test_an_allow_listed_as_is_never_blocked_nor_its_sources():
    ips = ["203.0.113.5", "198.51.100.6", "192.0.2.7"]
    rows = [r for ip in ips for r in spray(ip, prefix=None, asn=64666)]
    srcs = [{C.SOURCE_IP: ip, C.ASN: 64666} for ip in ips]
    warnings: list[str] = []
    plan = plan_of(rows, srcs, warnings, allowlist=("AS64666",), widen_residential=True)
    assert block_targets(plan) == []
    assert any("allow-listed network" in w for w in warnings)


# -- for all inputs ---------------------------------------------------------------------------

_octet = st.integers(0, 255)
_v4 = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", _octet, _octet, _octet, _octet)
_near_reserved = st.sampled_from(
    ["10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254", "172.16.0.1", "172.31.255.1", "192.168.0.1",
     "169.254.9.9", "127.0.0.1", "224.0.0.9", "240.0.0.1", "0.0.0.0", "9.255.255.255", "11.0.0.0", "100.63.255.255",
     "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0", "198.51.100.64", "198.51.100.127",
     "198.51.100.128", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:10.1.1.1", "::ffff:8.8.8.8", "2001:db8::1"]
)  # fmt: skip
_v6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))
_garbage = st.sampled_from(
    ["0.0.0.0/0", "10.0.0.0/8", "::/0", "9.9.9.8>", "1.2.3.4 ", "1.2.3.4, ", "<1.2.3.4>", "[::1]", "AS1", "", "01.2.3.4",
     "1.2.3.4/24", "8.0.0.0/8", "203.0.113.0/24", "2001:db8::/16", "1.2.3", "256.1.1.1", "1.2.3.4\n5.6.7.8"]
)  # fmt: skip
_address = st.one_of(_v4, _near_reserved, _v6, _garbage, st.text(max_size=12))


def _prefix_of(ip: str, cut: int) -> str | None:
    try:
        return str(ipaddress.ip_network((ip, cut if ":" not in ip else cut * 2 + 16), strict=False))
    except ValueError:
        return ip  # whatever enrichment made of it: the forged text itself


@st.composite
def _attackers(draw):
    ips = draw(st.lists(_address, min_size=1, max_size=12, unique=True))
    cut = draw(st.sampled_from([8, 16, 24]))  # enrichment gone wrong can hand over any width
    asns = draw(st.lists(st.sampled_from([64500, 64501, 64666]), min_size=len(ips), max_size=len(ips)))
    anonymous = draw(st.lists(st.booleans(), min_size=len(ips), max_size=len(ips)))
    return pl.DataFrame(
        {
            C.SOURCE_IP: ips,
            C.PREFIX: [_prefix_of(ip, cut) for ip in ips],
            C.PREFIX48: [None] * len(ips),
            C.ASN: asns,
            C.CAMPAIGN: [None] * len(ips),
            "shared_address": [False] * len(ips),
            scope.SERVICES: [[] for _ in ips],
            scope.ANONYMOUS: anonymous,
        },
        schema={**scope.ATTACKER_COLUMNS, scope.ANONYMOUS: pl.Boolean},
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attackers=_attackers(),
    widest=st.sampled_from([(16, 32), (20, 48), (24, 64), (28, 120)]),
    allow=st.lists(st.sampled_from([PARTNER, "203.0.113.128/25", "2001:db8:1::/48", "AS64501"]), unique=True),
)
def test_for_any_candidates_no_block_crosses_the_guards(attackers, widest, allow):
    cfg = PlanConfig(
        allowlist=tuple(allow),
        widest_block_v4=widest[0],
        widest_block_v6=widest[1],
        widen_residential=True,
        prefix_min_sources=1,
        asn_min_sources=1,
    )
    legit = pl.DataFrame(schema=scope.LEGIT_COLUMNS)
    blocks = scope.choose_blocks(attackers, legit, cfg).blocks
    never = [ipaddress.ip_network(n) for n in (*RESERVED, *[a for a in allow if not a.startswith("AS")])]
    for level, key in blocks.select(scope.LEVEL, scope.KEY).iter_rows():
        if level == scope.LEVEL_ASN:
            assert key.startswith("AS") and key[2:].isdigit() and key not in allow
            continue
        net = ipaddress.ip_network(key)  # valid, or this raises
        if net.version == 6 and net.network_address.ipv4_mapped is not None and net.prefixlen >= 96:
            net = ipaddress.ip_network((int(net.network_address.ipv4_mapped), net.prefixlen - 96))
        assert net.prefixlen >= (widest[0] if net.version == 4 else widest[1]), key
        assert not any(n.version == net.version and n.overlaps(net) for n in never), key
        if level == scope.LEVEL_IP:
            assert "/" not in key


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(_address, st.text()))
def test_guard_refuses_whatever_is_not_a_plain_valid_network(text):
    why = Guard.from_config(PlanConfig()).refusal(text)
    try:
        ok = text.strip() == text and "%" not in text and bool(ipaddress.ip_network(text, strict=True))
    except ValueError:
        ok = False
    if not ok:
        assert why is not None


# -- failures alone never reset nor lock --------------------------------------------------------


@pytest.mark.parametrize("failures", [1, 40, 2000])
@pytest.mark.parametrize("practitioner", [False, True])
def test_an_account_with_only_failures_is_never_reset_nor_locked(failures, practitioner):
    """However many failures an attacker aims at an account, and whatever scoring makes of them, the
    owner keeps a working password and its own networks."""
    home = ev("198.51.100.9", "nurse", "success", asn=64600, practitioner=practitioner)
    rows = [home, *[ev("203.0.113.5", "nurse", practitioner=practitioner) for _ in range(failures)]]
    acc = [{C.ACCOUNT: "nurse", "verdict": "compromised", C.RISK_SCORE: 0.99, "failures": failures}]
    cfg = Config().replace(plan={"lock_while_active": True})
    plan = recommend(world(rows, [{C.SOURCE_IP: "203.0.113.5"}], acc), Detection(), cfg, NOW)
    actions = set(plan.filter(pl.col("target") == "nurse").get_column("action").to_list())
    assert not actions & {"reset_credentials", "lock_account"}, actions
    restrict = plan.filter((pl.col("action") == "restrict_account") & (pl.col("target") == "nurse"))
    if restrict.height:
        assert "198.51.100.0/24" in restrict.item(0, "allowed_networks")


@pytest.mark.parametrize("attacker_success", [True, False])
def test_a_success_that_is_not_the_owners_still_resets_and_locks(attacker_success):
    rows = [
        ev("198.51.100.9", "nurse", "success", asn=64600),
        *[ev("203.0.113.5", "nurse") for _ in range(5)],
    ]
    if attacker_success:
        rows.append(ev("203.0.113.5", "nurse", "success", risk=0.95))
    acc = [{C.ACCOUNT: "nurse", "verdict": "compromised", C.RISK_SCORE: 0.99}]
    cfg = Config().replace(plan={"lock_while_active": True})
    plan = recommend(world(rows, [{C.SOURCE_IP: "203.0.113.5"}], acc), Detection(), cfg, NOW)
    actions = set(plan.filter(pl.col("target") == "nurse").get_column("action").to_list())
    assert ({"reset_credentials", "lock_account"} <= actions) == attacker_success, actions


@settings(max_examples=40, deadline=None)
@given(
    outcomes=st.lists(
        st.sampled_from(["failure", "unknown_user", "disabled", "policy_refused"]), min_size=1, max_size=30
    ),
    verdict=st.sampled_from(["compromised", "suspicious", "targeted", "clean"]),
    risk=st.floats(0, 1),
)
def test_for_any_failures_no_reset_nor_lock(outcomes, verdict, risk):
    rows = [ev(f"203.0.113.{i % 7}", "victim", o) for i, o in enumerate(outcomes)]
    acc = [{C.ACCOUNT: "victim", "verdict": verdict, C.RISK_SCORE: risk, "successes": 0}]
    srcs = [{C.SOURCE_IP: f"203.0.113.{i}"} for i in range(min(7, len(outcomes)))]
    cfg = Config().replace(plan={"lock_while_active": True})
    plan = recommend(world(rows, srcs, acc), Detection(), cfg, NOW)
    assert plan.filter(pl.col("action").is_in(["reset_credentials", "lock_account"])).is_empty()


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_hostile_night_gets_no_block_past_the_guards_and_says_what_was_refused(tmp_path):
    """A simulated night plus attackers on reserved and allow-listed addresses, and user names
    carrying a forged ``rip=0.0.0.0/0``: whatever the parsers make of them, nothing wider than /16,
    nothing reserved or allow-listed is blocked, and the refusals reach summary.json, the text
    summary and the log."""
    import json

    from typer.testing import CliRunner

    from detector.cli import app
    from tests.run_fixtures import DAY, _failed, night_lines

    extra = []
    for k in range(40):
        t = DAY + timedelta(hours=2, seconds=5 * k)
        extra.append(_failed(t, f"user{k % 8}@example.org rip=0.0.0.0/0,", "10.9.9.9", 5000 + k))
        extra.append(_failed(t, f"user{k % 8}@example.org", "192.168.7.7", 6000 + k))
        extra.append(_failed(t, f"user{k % 8}@example.org", "192.0.2.201", 7000 + k))
    lines = sorted(night_lines() + extra, key=lambda line: line[:25])
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "mail.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    conf = tmp_path / "detector.toml"
    conf.write_text('[plan]\nallowlist = ["192.0.2.200/29"]\n')
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["run", str(logs), "--out", str(out), "--config", str(conf), "--log-format", "json"]
    )
    assert res.exit_code in (0, 3), res.output
    plan = pl.read_parquet(out / "recommendations.parquet")
    guard = Guard.from_config(PlanConfig(allowlist=("192.0.2.200/29",)))
    assert guard.blocks(plan).is_empty()
    targets = block_targets(plan)
    assert targets and not any(t.startswith(("10.", "192.168.", "0.0.0.0", "192.0.2.20")) for t in targets)
    summary = json.loads((out / "summary.json").read_text())
    fired = [w for w in summary["warnings"] if w.startswith("plan guard:")]
    assert any("reserved network" in w for w in fired), summary["warnings"]
    assert any("allow-listed network 192.0.2.200/29" in w for w in fired), summary["warnings"]
    assert all(w in res.stdout.replace("\n", " ") or w[:60] in res.stdout for w in fired), res.stdout
    logged = [json.loads(x) for x in res.stderr.splitlines() if x.startswith("{")]
    assert any(x["msg"].startswith("plan guard:") and x["level"] == "warning" for x in logged)
