"""Exports to the enforcement points, each parsed back (and checked by the real tool where installed)."""

import csv
import io
import ipaddress
import json
import re
from datetime import timedelta

import polars as pl
import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.errors import ConfigError
from detector.recommend import FORMATS, export
from detector.recommend.export import render
from detector.schema import RECOMMENDATION_SCHEMA, C
from detector.simulate.geodb import NetworkInfo, write_geoip_databases
from tests.recommend_frames import NOW

BASE = {
    "services": [],
    "allowed_networks": None,
    "wave": None,
    "expires_at": NOW + timedelta(hours=24),
    C.RISK_SCORE: 0.9,
    "confidence": 0.9,
    "reason": 'spray "quoted" reason',
    C.TECHNIQUES: ["T1110.003"],
    "evidence": "{}",
    "collateral_accounts": 0,
    "collateral_practitioners": 0,
}
ROWS = [
    {"measure_id": "M1", "action": "block", "target_type": "ip", "target": "198.51.100.7"},
    {"measure_id": "M2", "action": "block", "target_type": "cidr", "target": "203.0.113.0/24"},
    {"measure_id": "M3", "action": "block", "target_type": "cidr", "target": "2001:db8:1:2::/64"},
    {"measure_id": "M4", "action": "block", "target_type": "asn", "target": "AS64666"},
    {
        "measure_id": "M5",
        "action": "block",
        "target_type": "ip",
        "target": "192.0.2.9",
        "services": ["smtp", "submission"],
    },
    {
        "measure_id": "M6",
        "action": "block",
        "target_type": "ip",
        "target": "192.0.2.10",
        "services": ["imap"],
    },
    {
        "measure_id": "M7",
        "action": "block",
        "target_type": "ip",
        "target": "192.0.2.11",
        "expires_at": NOW - timedelta(hours=1),
    },
    {"measure_id": "M8", "action": "lock_account", "target_type": "account", "target": "mallory@example.org"},
    {
        "measure_id": "M9",
        "action": "reset_credentials",
        "target_type": "account",
        "target": "mallory@example.org",
        "expires_at": None,
    },
    {
        "measure_id": "M10",
        "action": "restrict_account",
        "target_type": "account",
        "target": "alice@example.org",
        "services": ["imap"],
        "allowed_networks": ["198.51.100.0/24", "AS64600", "2001:db8:9::/48"],
        "expires_at": NOW + timedelta(hours=72),
    },
    {
        "measure_id": "M11",
        "action": "monitor",
        "target_type": "ip",
        "target": "192.0.2.99",
        "expires_at": None,
    },
]
PLAN = pl.DataFrame([{**BASE, **r} for r in ROWS], schema=RECOMMENDATION_SCHEMA)


def out(fmt):
    return export(PLAN, fmt, now=NOW)


@pytest.fixture(autouse=True)
def no_system_geoip(tmp_path, monkeypatch):
    """Exports look for an ASN database like `detector run`: keep the machine's own out of the tests."""
    empty = tmp_path / "no-geoip"
    empty.mkdir()
    monkeypatch.setenv("DETECTOR_GEOIP_DIR", str(empty))


def body(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_unknown_format_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean nftables"):
        export(PLAN, "nftable", now=NOW)


def nft_elements(text):
    sets = {}
    for name, elements in re.findall(r"set (\S+) \{[^}]*?(?:elements = \{ ([^}]*) \})?\s*\}", text):
        sets[name] = [tuple(e.split()[0::2][:2]) for e in elements.split(", ")] if elements else []
    return sets


def test_nftables_parsed_back():
    text = out("nftables")
    sets = nft_elements(text)
    assert sets["blocked_v4_all"] == [("198.51.100.7", "86400s"), ("203.0.113.0/24", "86400s")]
    assert sets["blocked_v6_all"] == [("2001:db8:1:2::/64", "86400s")]
    assert sets["blocked_v4_smtp_submission"] == [("192.0.2.9", "86400s")]
    assert sets["blocked_v4_imap"] == [("192.0.2.10", "86400s")]
    assert "192.0.2.11" not in text  # expired
    assert "# not expressible in nftables (AS number): AS64666 (M4)" in text
    assert "ip saddr @blocked_v4_smtp_submission tcp dport { 25, 465, 587 } drop" in text
    assert "ip6 saddr @blocked_v6_all tcp dport" in text


def test_nftables_drops_addresses_inside_a_blocked_prefix():
    rows = [*ROWS[:2], {"measure_id": "X", "action": "block", "target_type": "ip", "target": "203.0.113.9"}]
    plan = pl.DataFrame([{**BASE, **r} for r in rows], schema=RECOMMENDATION_SCHEMA)
    assert "203.0.113.9" not in export(plan, "nftables", now=NOW)


def test_postfix_cidr_table_parsed_back():
    lines = body(out("postfix"))
    table = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert set(table) == {"198.51.100.7", "203.0.113.0/24", "2001:db8:1:2::/64", "192.0.2.9"}
    assert all(v.startswith("REJECT 5.7.1 ") for v in table.values())
    assert "M2" in table["203.0.113.0/24"]
    for key in table:
        ipaddress.ip_network(key)


def dovecot_files(plan=None, **kw):
    return render(PLAN if plan is None else plan, "dovecot", now=NOW, **kw).files


def entries(text):
    """passwd-file lines -> key -> extra fields (the rest after the 7th colon)."""
    out = {}
    for line in body(text):
        fields = line.split(":", 7)
        assert len(fields) == 8, line
        out[fields[0]] = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in fields[7].split())
    return out


def test_dovecot_is_a_directory_with_a_snippet_naming_its_files():
    files = dovecot_files(dovecot_dir="/srv/dv")
    assert set(files) == {"detector.conf", "block-nets", "accounts", "reset"}
    snippet = files["detector.conf"]
    for name, key in (("block-nets", "%{service}"), ("accounts", "%{service}/%{user}"), ("reset", "%{user}")):
        assert f"args = username_format={key} /srv/dv/{name}" in snippet
    assert snippet.count("  result_success = return-fail") == 3


def test_dovecot_blocks_keep_ranges_per_service():
    blocked = entries(dovecot_files()["block-nets"])
    assert set(blocked) == {"imap", "pop3", "sieve", "smtp", "submission"}
    assert blocked["imap"]["allow_nets"].split(",") == [
        "192.0.2.10",
        "198.51.100.7",
        "203.0.113.0/24",
        "2001:db8:1:2::/64",
    ]
    assert "192.0.2.9" in blocked["smtp"]["allow_nets"] and "192.0.2.9" not in blocked["imap"]["allow_nets"]
    assert all({"nopassword", "nologin"} <= set(e) for e in blocked.values())
    assert "AS64666" in dovecot_files()["block-nets"]


def test_dovecot_accounts_refuse_a_lock_everywhere_and_a_restriction_outside_its_networks():
    accounts = entries(dovecot_files()["accounts"])
    assert accounts["imap/mallory@example.org"]["allow_nets"] == "local,0.0.0.0/0,::/0"
    services = ("imap", "pop3", "sieve", "smtp", "submission")
    assert set(accounts) == {f"{s}/mallory@example.org" for s in services} | {"imap/alice@example.org"}
    refused = [ipaddress.ip_network(n) for n in accounts["imap/alice@example.org"]["allow_nets"].split(",")]
    for a in ["198.51.100.9", "10.1.2.3", "192.168.0.1", "2001:db8:9::1", "::1"]:
        assert not any(ipaddress.ip_address(a) in n for n in refused), a
    for a in ["203.0.113.5", "8.8.8.8", "2001:db8:8::1"]:
        assert any(ipaddress.ip_address(a) in n for n in refused), a


def test_dovecot_account_keys_are_lower_case_as_dovecot_looks_them_up():
    plan = PLAN.with_columns(pl.col("target").str.replace("alice@example.org", "Alice@Example.ORG"))
    assert "imap/alice@example.org" in entries(dovecot_files(plan)["accounts"])


def test_dovecot_reset_refuses_the_hash_given_and_comments_the_others():
    files = dovecot_files(password_hashes={"mallory@example.org": "{SHA512-CRYPT}$6$salt$abc"})
    assert body(files["reset"]) == ["mallory@example.org:{SHA512-CRYPT}$6$salt$abc::::::"]
    without = render(PLAN, "dovecot", now=NOW)
    assert body(without.files["reset"]) == [] and "no password hash" in without.files["reset"]
    bad = render(PLAN, "dovecot", now=NOW, password_hashes={"mallory@example.org": "x:y z"})
    assert body(bad.files["reset"]) == [] and "password hash" in bad.tally.skipped[0]


def crowdsec_files(plan=PLAN):
    return render(plan, "crowdsec", now=NOW).files


def test_crowdsec_one_file_per_scope_parsed_back():
    files = crowdsec_files()
    scopes = {
        name: {d["scope"] for d in json.loads(files[name])} for name in ("ip.json", "range.json", "as.json")
    }
    assert scopes == {"ip.json": {"Ip"}, "range.json": {"Range"}, "as.json": {"AS"}}
    decisions = [d for name in scopes for d in json.loads(files[name])]
    by_value = {d["value"]: d for d in decisions}
    assert by_value["198.51.100.7"]["scope"] == "Ip"
    assert by_value["203.0.113.0/24"]["scope"] == "Range"
    assert by_value["64666"]["scope"] == "AS"
    assert "192.0.2.11" not in by_value
    for d in decisions:
        assert set(d) == {"duration", "reason", "scope", "type", "value"}
        assert d["type"] == "ban" and re.fullmatch(r"\d+s", d["duration"])
    assert by_value["198.51.100.7"]["duration"] == "86400s"


def test_csv_parsed_back():
    rows = list(csv.DictReader(io.StringIO(out("csv"))))
    assert len(rows) == PLAN.height and list(rows[0]) == list(RECOMMENDATION_SCHEMA)
    alice = next(r for r in rows if r["measure_id"] == "M10")
    assert alice["allowed_networks"].split(";") == ["198.51.100.0/24", "AS64600", "2001:db8:9::/48"]
    assert alice["reason"] == 'spray "quoted" reason'


def test_json_parsed_back():
    records = json.loads(out("json"))
    assert [r["measure_id"] for r in records] == PLAN.get_column("measure_id").to_list()
    back = pl.DataFrame(records).with_columns(
        pl.col("expires_at").str.to_datetime(time_zone="UTC", time_unit="us")
    )
    assert back.get_column("expires_at").to_list() == PLAN.get_column("expires_at").to_list()


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_export_writes_every_format(tmp_path, fmt):
    plan_file = tmp_path / "recommendations.parquet"
    PLAN.write_parquet(plan_file)
    target = tmp_path / f"out.{fmt}"
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--plan",
            str(plan_file),
            "--format",
            fmt,
            "--out",
            str(target),
            "--now",
            "2026-03-03T00:00:00",
        ],
    )
    assert result.exit_code == 0, result.output
    if fmt in ("dovecot", "crowdsec"):
        want = render(PLAN, fmt, now=NOW, dovecot_dir=str(target.resolve())).files
        assert {p.name: p.read_text() for p in target.iterdir()} == want
    else:
        assert target.read_bytes().decode() == out(fmt)
    assert re.search(r"\d+ written, \d+ expired, \d+ skipped, \d+ left as comments", result.stderr)


def test_cli_export_missing_plan_is_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["export", "--plan", str(tmp_path / "nope.parquet"), "--format", "csv"])
    assert result.exit_code == 2


def test_block_with_exceptions_is_carved_in_every_format():
    rows = [
        {
            "measure_id": "C1",
            "action": "block",
            "target_type": "cidr",
            "target": "51.210.5.0/24",
            "allowed_networks": ["51.210.5.114", "51.210.5.129"],
        }
    ]
    plan = pl.DataFrame([{**BASE, **r} for r in rows], schema=RECOMMENDATION_SCHEMA)
    covered = {str(ip) for ip in ipaddress.ip_network("51.210.5.0/24")} - {"51.210.5.114", "51.210.5.129"}
    postfix = {line.split()[0] for line in body(export(plan, "postfix", now=NOW))}
    expanded = {str(a) for n in postfix for a in ipaddress.ip_network(n)}
    assert expanded == covered
    blocked = entries(dovecot_files(plan)["block-nets"])["imap"]["allow_nets"].split(",")
    assert {str(a) for n in blocked for a in ipaddress.ip_network(n)} == covered
    ranges = [d["value"] for f in ("ip.json", "range.json") for d in json.loads(crowdsec_files(plan)[f])]
    assert {str(a) for n in ranges for a in ipaddress.ip_network(n)} == covered
    assert "51.210.5.114 " not in export(plan, "nftables", now=NOW)


AS_NETWORKS = [
    NetworkInfo("100.64.0.0/25", "NL", asn=64666, as_org="Bulletproof Hosting"),
    NetworkInfo("100.64.0.128/25", "NL", asn=64666, as_org="Bulletproof Hosting"),
    NetworkInfo("2001:db8:66::/48", "NL", asn=64666, as_org="Bulletproof Hosting"),
    NetworkInfo("81.56.0.0/16", "FR", asn=64600, as_org="Home ISP"),
    NetworkInfo("37.160.0.0/14", "FR", asn=64600, as_org="Home ISP"),
    NetworkInfo("192.0.2.0/24", "FR", asn=64601, as_org="Someone else"),
]


@pytest.fixture
def asn_dir(tmp_path):
    d = tmp_path / "geoip"
    write_geoip_databases(d, AS_NETWORKS, 1_735_689_600)
    return d


def test_asn_networks_are_read_from_the_database_and_collapsed(asn_dir):
    from detector.recommend.nets import asn_networks

    got = asn_networks(asn_dir / "GeoLite2-ASN.mmdb", [64666, 64600, 64999])
    assert [str(n) for n in got[64666]] == ["100.64.0.0/24", "2001:db8:66::/48"]
    assert [str(n) for n in got[64600]] == ["37.160.0.0/14", "81.56.0.0/16"]
    assert got[64999] == []


@pytest.mark.parametrize(
    ("fmt", "present", "absent"),
    [
        ("nftables", ["100.64.0.0/24 timeout", "2001:db8:66::/48 timeout"], ["AS64666"]),
        ("postfix", ["100.64.0.0/24 REJECT", "2001:db8:66::/48 REJECT"], ["AS64666"]),
        ("dovecot", ["100.64.0.0/24", "2001:db8:66::/48"], ["AS64666", "AS64600"]),
        ("crowdsec", ['"scope": "AS"', '"value": "64666"'], ["100.64.0.0/24"]),
    ],
)
def test_as_numbers_are_expanded_into_prefixes_where_the_format_needs_it(asn_dir, fmt, present, absent):
    text = export(PLAN, fmt, now=NOW, asn_db=asn_dir / "GeoLite2-ASN.mmdb")
    for needle in present:
        assert needle in text, needle
    for needle in absent:
        assert needle not in text, needle


def test_a_restriction_allows_its_expanded_as_networks_in_dovecot(asn_dir):
    files = render(PLAN, "dovecot", now=NOW, asn_db=asn_dir / "GeoLite2-ASN.mmdb").files
    refused = [
        ipaddress.ip_network(n)
        for n in entries(files["accounts"])["imap/alice@example.org"]["allow_nets"].split(",")
    ]
    for a in ["81.56.3.4", "37.161.0.1", "198.51.100.9"]:
        assert not any(ipaddress.ip_address(a) in n for n in refused), a
    assert any(ipaddress.ip_address("37.164.0.1") in n for n in refused)


def test_an_as_the_database_does_not_know_stays_a_comment(asn_dir):
    plan = PLAN.with_columns(
        pl.when(pl.col("measure_id") == "M4")
        .then(pl.lit("AS65123"))
        .otherwise(pl.col("target"))
        .alias("target")
    )
    assert "# not expressible in nftables (AS number): AS65123 (M4)" in export(
        plan, "nftables", now=NOW, asn_db=asn_dir / "GeoLite2-ASN.mmdb"
    )


def test_cli_export_expands_with_geoip_dir_and_warns_without(tmp_path, asn_dir):
    plan_file = tmp_path / "recommendations.parquet"
    PLAN.write_parquet(plan_file)
    base = ["export", "--plan", str(plan_file), "--format", "nftables", "--now", "2026-03-03T00:00:00"]
    without = CliRunner().invoke(app, base)
    assert without.exit_code == 0
    assert "1 AS numbers cannot be expressed in nftables" in without.stderr  # AS64600 is no block
    with_db = CliRunner().invoke(app, [*base, "--geoip-dir", str(asn_dir)])
    assert with_db.exit_code == 0 and "warning" not in with_db.stderr
    assert "100.64.0.0/24 timeout" in with_db.stdout
