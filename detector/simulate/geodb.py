"""Write GeoIP databases in MaxMind's format for an invented address plan.

The simulator and the tests describe networks as :class:`NetworkInfo` and get three files that
``geoip2.database.Reader`` reads exactly like MaxMind's own: ``GeoLite2-City.mmdb``,
``GeoLite2-ASN.mmdb`` and ``GeoIP2-Anonymous-IP.mmdb``. Like the real files they are IPv6 trees
holding IPv4 under ``::/96``, with ``::ffff:0:0/96`` (IPv4-mapped) and ``2002::/16`` (6to4) aliased
to the IPv4 subtree, and record types follow MaxMind's (``uint32`` AS numbers and geoname ids,
``double`` coordinates, booleans only where true). The same networks and ``build_epoch`` give the
same bytes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdb_writer import MmdbF64, MmdbU16, MmdbU32, MMDBWriter, SearchTreeNode
from netaddr import IPSet

CITY_FILE = "GeoLite2-City.mmdb"
ASN_FILE = "GeoLite2-ASN.mmdb"
ANONYMOUS_FILE = "GeoIP2-Anonymous-IP.mmdb"

_COUNTRY_NAMES = {
    "BE": "Belgium",
    "BR": "Brazil",
    "CA": "Canada",
    "CH": "Switzerland",
    "CN": "China",
    "DE": "Germany",
    "ES": "Spain",
    "FR": "France",
    "GB": "United Kingdom",
    "IN": "India",
    "IT": "Italy",
    "JP": "Japan",
    "LU": "Luxembourg",
    "MA": "Morocco",
    "NL": "Netherlands",
    "PL": "Poland",
    "PT": "Portugal",
    "RO": "Romania",
    "RU": "Russia",
    "SE": "Sweden",
    "SN": "Senegal",
    "TN": "Tunisia",
    "UA": "Ukraine",
    "US": "United States",
    "VN": "Vietnam",
}


@dataclass(frozen=True)
class NetworkInfo:
    """What the databases say about one network (``cidr`` such as ``"203.0.113.0/24"``)."""

    cidr: str
    country: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None
    as_org: str | None = None
    is_hosting: bool = False
    is_vpn: bool = False
    is_tor: bool = False
    is_public_proxy: bool = False
    is_residential_proxy: bool = False

    @property
    def is_anonymous(self) -> bool:
        return (
            self.is_hosting or self.is_vpn or self.is_tor or self.is_public_proxy or self.is_residential_proxy
        )


class _Writer(MMDBWriter):
    """MMDBWriter with a fixed build epoch (the stock one stamps the current time)."""

    def __init__(self, database_type: str, build_epoch: int) -> None:
        super().__init__(
            ip_version=6,
            database_type=database_type,
            languages=["en"],
            description={"en": f"{database_type} written by detector for a simulated address plan"},
            ipv4_compatible=True,
        )
        self._build_epoch = build_epoch

    def _build_meta(self) -> dict[str, Any]:
        return {**super()._build_meta(), "build_epoch": self._build_epoch}


def _geoname_id(text: str) -> MmdbU32:
    """A stable invented geoname id (MaxMind's are uint32)."""
    value = 0
    for byte in text.encode():
        value = (value * 131 + byte) % 4_000_000_000
    return MmdbU32(value + 1)


def _country_record(iso: str) -> dict[str, Any]:
    return {
        "geoname_id": _geoname_id(f"country:{iso}"),
        "iso_code": iso,
        "names": {"en": _COUNTRY_NAMES.get(iso, iso)},
    }


def city_record(net: NetworkInfo) -> dict[str, Any] | None:
    """The GeoLite2-City record of ``net``, or ``None`` when it has no location at all."""
    record: dict[str, Any] = {}
    if net.city is not None:
        record["city"] = {
            "geoname_id": _geoname_id(f"city:{net.country}:{net.city}"),
            "names": {"en": net.city},
        }
    if net.country is not None:
        record["country"] = _country_record(net.country)
    if net.latitude is not None and net.longitude is not None:
        record["location"] = {
            "accuracy_radius": MmdbU16(20 if net.city else 500),
            "latitude": MmdbF64(float(net.latitude)),
            "longitude": MmdbF64(float(net.longitude)),
        }
    if net.country is not None:
        record["registered_country"] = _country_record(net.country)
    return record or None


def asn_record(net: NetworkInfo) -> dict[str, Any] | None:
    """The GeoLite2-ASN record of ``net``, or ``None`` when its AS is unknown."""
    if net.asn is None:
        return None
    record: dict[str, Any] = {"autonomous_system_number": MmdbU32(net.asn)}
    if net.as_org is not None:
        record["autonomous_system_organization"] = net.as_org
    return record


def anonymous_record(net: NetworkInfo) -> dict[str, Any] | None:
    """The GeoIP2-Anonymous-IP record of ``net`` (true flags only, as MaxMind stores them)."""
    if not net.is_anonymous:
        return None
    flags = {
        "is_anonymous": True,
        "is_anonymous_vpn": net.is_vpn,
        "is_hosting_provider": net.is_hosting,
        "is_public_proxy": net.is_public_proxy,
        "is_residential_proxy": net.is_residential_proxy,
        "is_tor_exit_node": net.is_tor,
    }
    return {key: True for key, value in flags.items() if value}


def _ipv4_root(tree: SearchTreeNode) -> SearchTreeNode | None:
    node: Any = tree
    for _ in range(96):
        node = node.left if isinstance(node, SearchTreeNode) else None
        if node is None:
            return None
    return node if isinstance(node, SearchTreeNode) else None


def _alias(tree: SearchTreeNode, network: str, target: SearchTreeNode) -> None:
    """Point ``network`` (an IPv6 prefix) at ``target``, as MaxMind aliases IPv4 into IPv6."""
    net = ipaddress.IPv6Network(network)
    bits = format(int(net.network_address), "0128b")[: net.prefixlen]
    node = tree
    for bit in bits[:-1]:
        child = node.get_or_create(int(bit))
        if not isinstance(child, SearchTreeNode):
            return
        node = child
    if node[int(bits[-1])] is None:
        node[int(bits[-1])] = target


def _write(
    path: Path, database_type: str, records: list[tuple[str, dict[str, Any]]], build_epoch: int
) -> Path:
    writer = _Writer(database_type, build_epoch)
    # Supernets first: mmdb_writer splits an existing leaf for a subnet but a later supernet
    # would overwrite the subnets already inserted.
    ordered = sorted(
        records,
        key=lambda item: (
            ipaddress.ip_network(item[0]).version,
            ipaddress.ip_network(item[0]).prefixlen,
            int(ipaddress.ip_network(item[0]).network_address),
        ),
    )
    for cidr, record in ordered:
        writer.insert_network(IPSet([cidr]), record)
    root = _ipv4_root(writer.tree)
    if root is not None:
        _alias(writer.tree, "::ffff:0:0/96", root)
        _alias(writer.tree, "2002::/16", root)
    writer.to_db_file(str(path))
    return path


def _canonical(cidr: str) -> str:
    try:
        return str(ipaddress.ip_network(cidr, strict=True))
    except ValueError as e:
        raise ValueError(f"NetworkInfo.cidr {cidr!r} is not a network: {e}") from e


def write_geoip_databases(
    out_dir: Path, networks: Iterable[NetworkInfo], build_epoch: int
) -> dict[str, Path]:
    """Write the City, ASN and Anonymous-IP databases describing ``networks`` into ``out_dir``.

    Args:
        out_dir: Directory to write into (created if missing).
        networks: One entry per network; a network may lie inside another (the more specific
            one wins on lookup). The same ``cidr`` twice is an error.
        build_epoch: Seconds since the epoch stored as the databases' build time.

    Returns:
        ``{"city": path, "asn": path, "anonymous_ip": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    city: list[tuple[str, dict[str, Any]]] = []
    asn: list[tuple[str, dict[str, Any]]] = []
    anonymous: list[tuple[str, dict[str, Any]]] = []
    for net in networks:
        cidr = _canonical(net.cidr)
        if cidr in seen:
            raise ValueError(f"network {cidr} described twice")
        seen.add(cidr)
        for target, record in (
            (city, city_record(net)),
            (asn, asn_record(net)),
            (anonymous, anonymous_record(net)),
        ):
            if record is not None:
                target.append((cidr, record))
    return {
        "city": _write(out_dir / CITY_FILE, "GeoLite2-City", city, build_epoch),
        "asn": _write(out_dir / ASN_FILE, "GeoLite2-ASN", asn, build_epoch),
        "anonymous_ip": _write(out_dir / ANONYMOUS_FILE, "GeoIP2-Anonymous-IP", anonymous, build_epoch),
    }
