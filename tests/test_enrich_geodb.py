"""The MaxMind-format writer: geoip2 reads its files like MaxMind's, byte-reproducibly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geoip2.database
import geoip2.errors
import pytest

from detector.simulate.geodb import NetworkInfo, write_geoip_databases

EPOCH = 1_700_000_000

NETWORKS = [
    NetworkInfo("203.0.113.0/24", "FR", "Lyon", 45.75, 4.85, 64500, "Example Telecom"),
    NetworkInfo("203.0.113.128/25", asn=64501, as_org="Example Hosting", is_hosting=True, is_vpn=True),
    NetworkInfo("198.51.0.0/16", "DE", None, 51.0, 9.0, 3320, "Deutsche Telekom AG"),
    NetworkInfo("192.0.2.7/32", "NL", asn=200000, as_org="Onion", is_tor=True),
    NetworkInfo(
        "2001:db8:1::/48", "FR", "Paris", 48.85, 2.35, 4_242_424_242, "Big AS", is_residential_proxy=True
    ),
]


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_geoip_databases(tmp_path_factory.mktemp("geo"), NETWORKS, EPOCH)


def test_metadata(dbs: dict[str, Path]) -> None:
    expected = {"city": "GeoLite2-City", "asn": "GeoLite2-ASN", "anonymous_ip": "GeoIP2-Anonymous-IP"}
    assert set(dbs) == set(expected)
    for key, path in dbs.items():
        with geoip2.database.Reader(str(path)) as reader:
            meta = reader.metadata()
        assert meta.database_type == expected[key]
        assert meta.build_epoch == EPOCH
        assert meta.ip_version == 6
        assert path.name == f"{expected[key]}.mmdb"


@pytest.mark.parametrize(
    ("ip", "country", "city", "lat", "network"),
    [
        ("203.0.113.5", "FR", "Lyon", 45.75, "203.0.113.0/24"),
        ("203.0.113.200", "FR", "Lyon", 45.75, "203.0.113.0/24"),
        ("::ffff:203.0.113.5", "FR", "Lyon", 45.75, None),
        ("2002:cb00:7105::1", "FR", "Lyon", 45.75, None),
        ("198.51.3.4", "DE", None, 51.0, "198.51.0.0/16"),
        ("192.0.2.7", "NL", None, None, "192.0.2.7/32"),
        ("2001:db8:1:2::9", "FR", "Paris", 48.85, "2001:db8:1::/48"),
    ],
)
def test_city(
    dbs: dict[str, Path], ip: str, country: str, city: str | None, lat: float | None, network: str | None
) -> None:
    with geoip2.database.Reader(str(dbs["city"])) as reader:
        r = reader.city(ip)
    assert r.country.iso_code == country
    assert r.registered_country.iso_code == country
    assert r.city.name == city
    assert r.location.latitude == lat
    if network is not None:
        assert str(r.traits.network) == network


@pytest.mark.parametrize(
    ("ip", "asn", "org"),
    [
        ("203.0.113.5", 64500, "Example Telecom"),
        ("203.0.113.200", 64501, "Example Hosting"),
        ("2001:db8:1::1", 4_242_424_242, "Big AS"),
    ],
)
def test_asn(dbs: dict[str, Path], ip: str, asn: int, org: str) -> None:
    with geoip2.database.Reader(str(dbs["asn"])) as reader:
        r = reader.asn(ip)
    assert (r.autonomous_system_number, r.autonomous_system_organization) == (asn, org)


@pytest.mark.parametrize(
    ("ip", "flags"),
    [
        ("203.0.113.200", {"is_anonymous", "is_anonymous_vpn", "is_hosting_provider"}),
        ("192.0.2.7", {"is_anonymous", "is_tor_exit_node"}),
        ("2001:db8:1::1", {"is_anonymous", "is_residential_proxy"}),
    ],
)
def test_anonymous(dbs: dict[str, Path], ip: str, flags: set[str]) -> None:
    names = {
        "is_anonymous",
        "is_anonymous_vpn",
        "is_hosting_provider",
        "is_public_proxy",
        "is_residential_proxy",
        "is_tor_exit_node",
    }
    with geoip2.database.Reader(str(dbs["anonymous_ip"])) as reader:
        r = reader.anonymous_ip(ip)
    assert {n for n in names if getattr(r, n)} == flags


@pytest.mark.parametrize(
    ("kind", "ip"), [("city", "10.0.0.1"), ("asn", "2001:db9::1"), ("anonymous_ip", "203.0.113.5")]
)
def test_not_found(dbs: dict[str, Path], kind: str, ip: str) -> None:
    with geoip2.database.Reader(str(dbs[kind])) as reader, pytest.raises(geoip2.errors.AddressNotFoundError):
        getattr(reader, kind)(ip)


def test_byte_reproducible(tmp_path: Path) -> None:
    a = write_geoip_databases(tmp_path / "a", NETWORKS, EPOCH)
    b = write_geoip_databases(tmp_path / "b", list(reversed(NETWORKS)), EPOCH)
    for key in a:
        assert hashlib.sha256(a[key].read_bytes()).digest() == hashlib.sha256(b[key].read_bytes()).digest()


def test_empty_databases_are_readable(tmp_path: Path) -> None:
    dbs = write_geoip_databases(tmp_path, [], EPOCH)
    with (
        geoip2.database.Reader(str(dbs["city"])) as reader,
        pytest.raises(geoip2.errors.AddressNotFoundError),
    ):
        reader.city("203.0.113.5")


@pytest.mark.parametrize(
    "nets", [[NetworkInfo("203.0.113.1/24")], [NetworkInfo("10.0.0.0/8"), NetworkInfo("10.0.0.0/8")]]
)
def test_bad_networks(tmp_path: Path, nets: list[NetworkInfo]) -> None:
    with pytest.raises(ValueError):
        write_geoip_databases(tmp_path, nets, EPOCH)


def test_simulated_world_databases_give_the_planned_answers(tmp_path: Path) -> None:
    """The simulator's address plan, written by this writer, read back through enrichment."""
    import ipaddress

    import polars as pl

    from detector.enrich import find_databases, lookup_addresses
    from detector.simulate import simulate

    simulate(tmp_path, accounts=60, days=1, seed=5)
    plan = pl.read_csv(tmp_path / "geoip" / "address-plan.csv", infer_schema_length=0)
    # One address per planned network that no more specific network overrides.
    nets = [ipaddress.ip_network(c) for c in plan["cidr"]]
    probes = {}
    for i, net in enumerate(nets):
        ip = net.network_address + (net.num_addresses - 1 if net.num_addresses > 1 else 0)
        if not any(other != net and ip in other and other.prefixlen > net.prefixlen for other in nets):
            probes[str(ip)] = plan.row(i, named=True)
    assert len(probes) > len(nets) // 2
    out = lookup_addresses(list(probes), find_databases(tmp_path / "geoip"))
    for row in out.iter_rows(named=True):
        want = probes[row["source_ip"]]
        assert row["country"] == (want["country"] or None), row
        assert row["asn"] == (int(want["asn"]) if want["asn"] else None), row
        assert row["is_vpn"] == (want["is_vpn"] == "true"), row
        assert row["is_tor"] == (want["is_tor"] == "true"), row
