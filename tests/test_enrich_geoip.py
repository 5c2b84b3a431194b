"""GeoIP: finding databases, classifying addresses, one lookup per distinct address."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.enrich.geoip import (
    ADDRESS_SCHEMA,
    ENV_VAR,
    PRIVATE_V4,
    GeoIPDatabases,
    classify,
    describe,
    find_databases,
    lookup_addresses,
)
from detector.errors import EnrichmentError
from detector.schema import C
from detector.simulate.geodb import NetworkInfo, write_geoip_databases

EPOCH = 1_735_689_600  # 2025-01-01

NETWORKS = [
    NetworkInfo("203.0.113.0/24", "FR", "Lyon", 45.75, 4.85, 64500, "Example Telecom"),
    NetworkInfo("203.0.113.128/25", "NL", None, 52.37, 4.9, 64501, "Example Hosting", is_hosting=True),
    NetworkInfo("198.51.100.0/24", "SE", None, None, None, 64502, "Example VPN", is_vpn=True),
    NetworkInfo("192.0.2.66/32", "DE", None, None, None, 64503, "Onion", is_tor=True),
    NetworkInfo("100.64.0.0/10", "FR", None, None, None, 64504, "Carrier CGNAT"),
    NetworkInfo("2001:db8:1::/48", "FR", "Paris", 48.85, 2.35, 4_200_000_000, "IPv6 ISP"),
]


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("geoip")
    write_geoip_databases(d, NETWORKS, EPOCH)
    return d


@pytest.fixture(scope="module")
def dbs(geo_dir: Path) -> GeoIPDatabases:
    return find_databases(geo_dir)


def test_find_records_type_and_build_date(dbs: GeoIPDatabases, geo_dir: Path) -> None:
    meta = dbs.metadata()
    assert meta["missing"] == []
    assert meta["searched"] == [str(geo_dir)]
    assert meta["databases"]["city"]["database_type"] == "GeoLite2-City"
    assert meta["databases"]["asn"]["database_type"] == "GeoLite2-ASN"
    assert meta["databases"]["anonymous_ip"]["database_type"] == "GeoIP2-Anonymous-IP"
    assert {d["build_date"] for d in meta["databases"].values()} == {"2025-01-01"}


def test_env_var_used_when_no_dir(geo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(geo_dir))
    assert find_databases(None).city is not None


def test_explicit_dir_beats_env(geo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(geo_dir))
    assert find_databases(tmp_path).missing == ("city", "asn", "anonymous_ip")


def test_system_dirs_searched_per_database(
    geo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copy(geo_dir / "GeoLite2-ASN.mmdb", first)
    shutil.copy(geo_dir / "GeoLite2-City.mmdb", second)
    found = find_databases(None, system_dirs=(tmp_path / "absent", first, second))
    assert found.asn is not None and found.asn.path.parent == first
    assert found.city is not None and found.city.path.parent == second
    assert found.missing == ("anonymous_ip",)


@pytest.mark.parametrize("source", ["arg", "env"])
def test_named_dir_missing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    missing = tmp_path / "nope"
    if source == "env":
        monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(EnrichmentError, match="not found") as e:
        find_databases(missing if source == "arg" else None)
    assert e.value.path == str(missing)


@pytest.mark.parametrize(
    ("files", "kind", "expected"),
    [
        (["GeoLite2-City.mmdb", "GeoIP2-City.mmdb"], "city", "GeoIP2-City.mmdb"),
        (["GeoLite2-Country.mmdb"], "city", "GeoLite2-Country.mmdb"),
        (["GeoLite2-City.mmdb", "GeoLite2-Country.mmdb"], "city", "GeoLite2-City.mmdb"),
        (
            ["dbip-city-lite-2024-11.mmdb", "dbip-city-lite-2025-01.mmdb"],
            "city",
            "dbip-city-lite-2025-01.mmdb",
        ),
        (["dbip-asn-lite-2025-01.mmdb"], "asn", "dbip-asn-lite-2025-01.mmdb"),
        (["GeoIP2-ISP.mmdb", "GeoLite2-ASN.mmdb"], "asn", "GeoIP2-ISP.mmdb"),
    ],
)
def test_standard_names(geo_dir: Path, tmp_path: Path, files: list[str], kind: str, expected: str) -> None:
    source = geo_dir / ("GeoLite2-ASN.mmdb" if kind == "asn" else "GeoLite2-City.mmdb")
    for name in files:
        shutil.copy(source, tmp_path / name)
    found = find_databases(tmp_path).get(kind)
    assert found is not None and found.path.name == expected


def test_corrupt_database_is_an_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "GeoLite2-City.mmdb"
    bad.write_bytes(b"this is not a MaxMind database" * 10)
    with pytest.raises(EnrichmentError) as e:
        find_databases(tmp_path)
    assert e.value.path == str(bad)
    assert str(bad) in str(e.value)


def test_truncated_database_is_an_error(geo_dir: Path, tmp_path: Path) -> None:
    data = (geo_dir / "GeoLite2-ASN.mmdb").read_bytes()
    (tmp_path / "GeoLite2-ASN.mmdb").write_bytes(data[: len(data) // 3])
    with pytest.raises(EnrichmentError):
        find_databases(tmp_path)


def test_renamed_database_of_wrong_kind(geo_dir: Path, tmp_path: Path) -> None:
    shutil.copy(geo_dir / "GeoLite2-ASN.mmdb", tmp_path / "GeoLite2-City.mmdb")
    with pytest.raises(EnrichmentError, match="not a city database"):
        find_databases(tmp_path)


def test_corrupt_file_given_directly_to_lookup(tmp_path: Path) -> None:
    bad = tmp_path / "x.mmdb"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(EnrichmentError):
        describe("city", bad)


@pytest.mark.parametrize(
    ("ip", "private", "prefix", "prefix48"),
    [
        ("203.0.113.7", False, "203.0.113.0/24", None),
        ("8.8.8.8", False, "8.8.8.0/24", None),
        ("10.1.2.3", True, "10.1.2.0/24", None),
        ("172.31.255.1", True, "172.31.255.0/24", None),
        ("172.32.0.1", False, "172.32.0.0/24", None),
        ("192.168.1.10", True, "192.168.1.0/24", None),
        ("127.0.0.1", True, "127.0.0.0/24", None),
        ("169.254.3.4", True, "169.254.3.0/24", None),
        ("224.0.0.251", True, "224.0.0.0/24", None),
        ("255.255.255.255", True, "255.255.255.0/24", None),
        ("100.64.1.2", False, "100.64.1.0/24", None),
        ("198.51.100.9", False, "198.51.100.0/24", None),
        ("2001:db8:1:2::9", False, "2001:db8:1:2::/64", "2001:db8:1::/48"),
        ("2a01:e0a:abc:1230:1:2:3:4", False, "2a01:e0a:abc:1230::/64", "2a01:e0a:abc::/48"),
        ("::1", True, "::/64", "::/48"),
        ("fe80::1%eth0", True, "fe80::/64", "fe80::/48"),
        ("fd12:3456:789a:1::1", True, "fd12:3456:789a:1::/64", "fd12:3456:789a::/48"),
        ("::ffff:203.0.113.7", False, "203.0.113.0/24", None),
        ("::ffff:10.0.0.1", True, "10.0.0.0/24", None),
        ("010.001.002.003", True, "10.1.2.0/24", None),
    ],
)
def test_classify(ip: str, private: bool, prefix: str, prefix48: str | None) -> None:
    row = classify([ip]).row(0, named=True)
    assert row[C.SOURCE_IP] == ip
    assert (row[C.IS_PRIVATE], row[C.PREFIX], row[C.PREFIX48]) == (private, prefix, prefix48)


@pytest.mark.parametrize("text", ["not-an-ip", "999.1.1.1", "1.2.3", "2001:db8::zz", ""])
def test_classify_invalid(text: str) -> None:
    row = classify([text]).row(0, named=True)
    assert (row[C.IS_PRIVATE], row[C.PREFIX], row["lookup_ip"]) == (None, None, None)


def test_classify_is_one_row_per_distinct_address() -> None:
    out = classify(["203.0.113.7", "203.0.113.7", None, "2001:db8::1", "2001:db8::1"])
    assert out.height == 2


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.7", ("FR", "Lyon", 45.75, 64500, "Example Telecom", False, False, False, False)),
        ("203.0.113.130", ("NL", None, 52.37, 64501, "Example Hosting", True, False, False, False)),
        ("198.51.100.9", ("SE", None, None, 64502, "Example VPN", False, True, False, False)),
        ("192.0.2.66", ("DE", None, None, 64503, "Onion", False, False, True, False)),
        ("192.0.2.67", (None, None, None, None, None, False, False, False, False)),
        ("100.64.9.9", ("FR", None, None, 64504, "Carrier CGNAT", False, False, False, False)),
        ("2001:db8:1:ff::1", ("FR", "Paris", 48.85, 4_200_000_000, "IPv6 ISP", False, False, False, False)),
        ("::ffff:203.0.113.7", ("FR", "Lyon", 45.75, 64500, "Example Telecom", False, False, False, False)),
        ("10.0.0.1", (None, None, None, None, None, None, None, None, True)),
        ("203.000.113.007", ("FR", "Lyon", 45.75, 64500, "Example Telecom", False, False, False, False)),
    ],
)
def test_lookup(dbs: GeoIPDatabases, ip: str, expected: tuple) -> None:
    row = lookup_addresses([ip], dbs).row(0, named=True)
    cols = (C.COUNTRY, C.CITY, C.LATITUDE, C.ASN, C.AS_ORG, C.IS_HOSTING, C.IS_VPN, C.IS_TOR, C.IS_PRIVATE)
    assert tuple(row[c] for c in cols) == expected


def test_lookup_schema_and_missing_databases(dbs: GeoIPDatabases) -> None:
    only_asn = GeoIPDatabases(asn=dbs.asn)
    out = lookup_addresses(["203.0.113.7", "10.0.0.1"], only_asn)
    assert out.schema == ADDRESS_SCHEMA
    row = out.filter(pl.col(C.SOURCE_IP) == "203.0.113.7").row(0, named=True)
    assert row[C.ASN] == 64500
    assert row[C.COUNTRY] is None and row[C.IS_VPN] is None


@pytest.mark.parametrize(("geoip", "expected"), [(True, [True, False]), (False, [True, None])])
def test_hosting_asns(dbs: GeoIPDatabases, geoip: bool, expected: list[bool | None]) -> None:
    databases = dbs if geoip else GeoIPDatabases(asn=dbs.asn)
    out = lookup_addresses(["198.51.100.9", "203.0.113.7"], databases, hosting_asns=[64502])
    got = dict(zip(out[C.SOURCE_IP], out[C.IS_HOSTING], strict=True))
    assert [got["198.51.100.9"], got["203.0.113.7"]] == expected


def test_lookup_without_databases() -> None:
    out = lookup_addresses(["203.0.113.7"], None)
    assert out.select(pl.col(C.COUNTRY, C.ASN, C.IS_TOR).is_null().all()).row(0) == (True, True, True)
    assert out[C.PREFIX][0] == "203.0.113.0/24"


@settings(deadline=None, max_examples=200)
@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_ipv6_prefixes_match_ipaddress(value: int) -> None:
    text = str(ipaddress.IPv6Address(value))
    if ipaddress.IPv6Address(value).ipv4_mapped is not None:
        return
    row = classify([text]).row(0, named=True)
    assert row[C.PREFIX] == str(ipaddress.IPv6Network((value, 64), strict=False))
    assert row[C.PREFIX48] == str(ipaddress.IPv6Network((value, 48), strict=False))


@settings(deadline=None, max_examples=200)
@given(st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_ipv4_classification_matches_ipaddress(value: int) -> None:
    ip = ipaddress.IPv4Address(value)
    row = classify([str(ip)]).row(0, named=True)
    assert row[C.PREFIX] == str(ipaddress.IPv4Network((value, 24), strict=False))
    assert row[C.IS_PRIVATE] == any(ip in ipaddress.IPv4Network(n) for n in PRIVATE_V4)


def test_ipv4_only_dbip_style_database(tmp_path: Path) -> None:
    """A DB-IP-style Country database holding IPv4 only: IPv6 addresses are simply not found."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=4, database_type="DBIP-Country-Lite", languages=["en"], description="t")
    writer.insert_network(
        IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "FR", "names": {"en": "France"}}}
    )
    writer.to_db_file(str(tmp_path / "dbip-country-lite-2025-01.mmdb"))
    found = find_databases(tmp_path)
    assert found.city is not None and found.city.database_type == "DBIP-Country-Lite"
    out = lookup_addresses(["203.0.113.9", "2001:db8::1"], found)
    got = dict(zip(out[C.SOURCE_IP], out[C.COUNTRY], strict=True))
    assert got == {"203.0.113.9": "FR", "2001:db8::1": None}
