"""GeoIP databases: finding them, classifying addresses, looking each distinct address up once.

Databases are MaxMind DB files read with ``maxminddb`` (the reader behind ``geoip2``) in
``MODE_AUTO``: MaxMind's GeoIP2/GeoLite2 City, Country, ASN, ISP and Anonymous-IP files and DB-IP's
free "lite" files, found by their standard names. The per-address work is a Python loop over the
*distinct* public addresses of the run (tens of thousands), never over events; the result is a
small table that the enrichment stage joins back onto the events.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import maxminddb
import polars as pl

from detector.errors import EnrichmentError
from detector.schema import C

ENV_VAR = "DETECTOR_GEOIP_DIR"
SYSTEM_DIRS: tuple[Path, ...] = (Path("/var/lib/GeoIP"), Path("/usr/share/GeoIP"))

CITY = "city"
ASN = "asn"
ANONYMOUS_IP = "anonymous_ip"
KINDS = (CITY, ASN, ANONYMOUS_IP)

# File names (or globs) per kind, best first: commercial before free, City before Country.
FILE_NAMES: dict[str, tuple[str, ...]] = {
    CITY: (
        "GeoIP2-City.mmdb",
        "GeoLite2-City.mmdb",
        "dbip-city-lite-*.mmdb",
        "GeoIP2-Country.mmdb",
        "GeoLite2-Country.mmdb",
        "dbip-country-lite-*.mmdb",
    ),
    ASN: ("GeoIP2-ISP.mmdb", "GeoLite2-ASN.mmdb", "dbip-asn-lite-*.mmdb"),
    ANONYMOUS_IP: ("GeoIP2-Anonymous-IP.mmdb",),
}
# A database whose type names none of these words is in the wrong place (a renamed file).
_TYPE_WORDS: dict[str, tuple[str, ...]] = {
    CITY: ("City", "Country"),
    ASN: ("ASN", "ISP"),
    ANONYMOUS_IP: ("Anonymous",),
}

# Never looked up: RFC 1918, loopback, link-local, multicast, "this network", reserved 240/4,
# unique-local and unspecified IPv6. Documentation and benchmarking ranges (192.0.2/24,
# 198.51.100/24, 203.0.113/24, 198.18/15, 2001:db8::/32) ARE looked up: simulated worlds and
# tests use them. CGNAT 100.64/10 is not private here (see docs/enrichment.md).
PRIVATE_V4: tuple[str, ...] = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
PRIVATE_V6: tuple[str, ...] = ("::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8")
_PRIVATE_V4_NETS = tuple(ipaddress.IPv4Network(n) for n in PRIVATE_V4)
_PRIVATE_V4_RANGES = tuple((int(n.network_address), int(n.broadcast_address)) for n in _PRIVATE_V4_NETS)
_PRIVATE_V6_RANGES = tuple(
    (int(n.network_address), int(n.broadcast_address)) for n in map(ipaddress.IPv6Network, PRIVATE_V6)
)

GEO_COLUMNS = (C.COUNTRY, C.CITY, C.LATITUDE, C.LONGITUDE, C.ASN, C.AS_ORG, C.IS_HOSTING, C.IS_VPN, C.IS_TOR)
ADDRESS_SCHEMA = pl.Schema(
    {
        C.SOURCE_IP: pl.String,
        C.IS_PRIVATE: pl.Boolean,
        C.PREFIX: pl.String,
        C.PREFIX48: pl.String,
        C.COUNTRY: pl.String,
        C.CITY: pl.String,
        C.LATITUDE: pl.Float64,
        C.LONGITUDE: pl.Float64,
        C.ASN: pl.Int64,
        C.AS_ORG: pl.String,
        C.IS_HOSTING: pl.Boolean,
        C.IS_VPN: pl.Boolean,
        C.IS_TOR: pl.Boolean,
    }
)
"""One row per distinct source address: what the events gain from GeoIP and the prefixes."""


@dataclass(frozen=True)
class DatabaseInfo:
    kind: str
    path: Path
    database_type: str
    build_epoch: int

    @property
    def build_date(self) -> str:
        return datetime.fromtimestamp(self.build_epoch, UTC).date().isoformat()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "database_type": self.database_type,
            "build_epoch": self.build_epoch,
            "build_date": self.build_date,
        }


@dataclass(frozen=True)
class GeoIPDatabases:
    """The databases found for one run (any of them may be missing)."""

    city: DatabaseInfo | None = None
    asn: DatabaseInfo | None = None
    anonymous_ip: DatabaseInfo | None = None
    searched: tuple[str, ...] = field(default=())

    def get(self, kind: str) -> DatabaseInfo | None:
        return getattr(self, kind)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if self.get(k) is None)

    def metadata(self) -> dict[str, Any]:
        found = {k: db.to_dict() for k in KINDS if (db := self.get(k)) is not None}
        return {"databases": found, "missing": list(self.missing), "searched": list(self.searched)}


def open_reader(path: Path) -> maxminddb.Reader:
    """Open one database, turning every failure into an EnrichmentError naming the file."""
    try:
        return maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as e:
        raise EnrichmentError(
            f"cannot read GeoIP database: {e}", path=path, hint="re-download it or remove it"
        ) from e


def describe(kind: str, path: Path) -> DatabaseInfo:
    """Open ``path`` to check it is a readable database of ``kind``; return its type and date."""
    reader = open_reader(path)
    try:
        meta = reader.metadata()
    finally:
        reader.close()
    words = _TYPE_WORDS[kind]
    if not any(w in meta.database_type for w in words):
        raise EnrichmentError(
            f"database type {meta.database_type!r} is not a {kind} database",
            path=path,
            hint=f"expected a type naming {' or '.join(words)}",
        )
    return DatabaseInfo(kind, path, meta.database_type, int(meta.build_epoch))


def _find_in(directory: Path, kind: str) -> Path | None:
    for pattern in FILE_NAMES[kind]:
        # Several dated DB-IP files: the newest name (YYYY-MM sorts) wins.
        matches = sorted(directory.glob(pattern))
        if matches:
            return matches[-1]
    return None


def find_databases(
    geoip_dir: str | Path | None, *, system_dirs: Iterable[Path] = SYSTEM_DIRS
) -> GeoIPDatabases:
    """Find the City (or Country), ASN and Anonymous-IP databases.

    An explicit ``geoip_dir``, else ``$DETECTOR_GEOIP_DIR``, is the only directory searched (and
    must exist); without either, each database is taken from the first of ``/var/lib/GeoIP`` and
    ``/usr/share/GeoIP`` that has it. Every database found is opened once to check it.

    Raises:
        EnrichmentError: the named directory does not exist, or a database is unreadable.
    """
    named = geoip_dir if geoip_dir is not None else os.environ.get(ENV_VAR) or None
    if named is not None:
        directory = Path(named).expanduser()
        if not directory.is_dir():
            source = "--geoip-dir" if geoip_dir is not None else f"${ENV_VAR}"
            raise EnrichmentError(f"GeoIP directory ({source}) not found", path=directory)
        dirs: tuple[Path, ...] = (directory,)
    else:
        dirs = tuple(d for d in system_dirs if d.is_dir())
    found: dict[str, DatabaseInfo] = {}
    for kind in KINDS:
        for directory in dirs:
            path = _find_in(directory, kind)
            if path is not None:
                found[kind] = describe(kind, path)
                break
    return GeoIPDatabases(**found, searched=tuple(str(d) for d in dirs))


def ipv4_valid() -> pl.Expr:
    return pl.col(C.SOURCE_IP).str.contains(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


def _octets(column: str) -> list[pl.Expr]:
    octets = pl.col(column).str.split(".")
    return [octets.list.get(i, null_on_oob=True).cast(pl.Int64, strict=False) for i in range(4)]


def ipv4_int(column: str = C.SOURCE_IP) -> pl.Expr:
    """The IPv4 address in ``column`` as an integer (null if any octet is out of range)."""
    parts = _octets(column)
    value = parts[0] * 16777216 + parts[1] * 65536 + parts[2] * 256 + parts[3]
    in_range = pl.all_horizontal([p.is_between(0, 255) for p in parts])
    return pl.when(in_range).then(value)


def ipv4_canonical(column: str = C.SOURCE_IP) -> pl.Expr:
    """Dotted quad without leading zeros (``"010.1.2.3"`` -> ``"10.1.2.3"``)."""
    return pl.concat_str([p.cast(pl.String) for p in _octets(column)], separator=".")


def ipv4_private(value: pl.Expr) -> pl.Expr:
    """Whether the integer IPv4 address is in one of the ranges that are not looked up."""
    tests = [
        value.is_between(int(net.network_address), int(net.broadcast_address)) for net in _PRIVATE_V4_NETS
    ]
    return pl.any_horizontal(tests)


def ipv4_prefix24(column: str = C.SOURCE_IP) -> pl.Expr:
    """``"203.0.113.7"`` -> ``"203.0.113.0/24"``, by string operations."""
    return pl.col(column).str.replace(r"\.\d{1,3}$", ".0") + pl.lit("/24")


def _v6_prefix(value: int, groups: int) -> str:
    """``"2001:db8:1::/48"``-style text of the first ``groups`` 16-bit groups of ``value``.

    The zero run after the kept groups is always the longest, so the compressed form is the
    kept groups without their trailing zeros, then ``::`` (what ``ipaddress`` prints, faster).
    """
    kept = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(groups)]
    while kept and kept[-1] == 0:
        kept.pop()
    return ":".join(f"{g:x}" for g in kept) + f"::/{16 * groups}"


def _v6_int(text: str) -> int | None:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except OSError:
        pass
    try:
        ip = ipaddress.ip_address(text)  # scoped (fe80::1%eth0) and other forms inet_pton refuses
    except ValueError:
        return None
    return int(ip) if ip.version == 6 else (0xFFFF << 32) | int(ip)


def _ipv6_rows(addresses: Sequence[str]) -> pl.DataFrame:
    """Classify and cut prefixes of the non-IPv4 distinct addresses (Python, one pass)."""
    canonical: list[str | None] = []
    private: list[bool | None] = []
    p64: list[str | None] = []
    p48: list[str | None] = []
    for text in addresses:
        value = _v6_int(text)
        if value is None:
            canonical.append(None)
            private.append(None)
            p64.append(None)
            p48.append(None)
        elif value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d is an IPv4 client
            v4 = value & 0xFFFFFFFF
            canonical.append(str(ipaddress.IPv4Address(v4)))
            private.append(any(lo <= v4 <= hi for lo, hi in _PRIVATE_V4_RANGES))
            p64.append(f"{ipaddress.IPv4Address(v4 & 0xFFFFFF00)}/24")
            p48.append(None)
        else:
            canonical.append(text.split("%", 1)[0])
            private.append(any(lo <= value <= hi for lo, hi in _PRIVATE_V6_RANGES))
            p64.append(_v6_prefix(value, 4))
            p48.append(_v6_prefix(value, 3))
    return pl.DataFrame(
        {
            C.SOURCE_IP: list(addresses),
            "lookup_ip": canonical,
            C.IS_PRIVATE: private,
            C.PREFIX: p64,
            C.PREFIX48: p48,
        },
        schema={
            C.SOURCE_IP: pl.String,
            "lookup_ip": pl.String,
            C.IS_PRIVATE: pl.Boolean,
            C.PREFIX: pl.String,
            C.PREFIX48: pl.String,
        },
    )


def classify(addresses: pl.Series | Sequence[str]) -> pl.DataFrame:
    """Per distinct address: ``source_ip``, ``lookup_ip`` (canonical, null if invalid), ``is_private``,
    ``prefix`` (/24 or /64) and ``prefix48`` (IPv6 only).

    IPv4 is handled by vectorised string and integer operations; only the rest (IPv6, mapped,
    scoped or malformed text) goes through Python's ``ipaddress``.
    """
    frame = pl.DataFrame({C.SOURCE_IP: addresses}, schema={C.SOURCE_IP: pl.String}).drop_nulls().unique()
    is_v4 = frame.select(ipv4_valid().fill_null(False)).to_series()
    v4 = (
        frame.filter(is_v4)
        .with_columns(ipv4_int().alias("_int"))
        .with_columns(pl.when(pl.col("_int").is_not_null()).then(ipv4_canonical()).alias("lookup_ip"))
        .select(
            C.SOURCE_IP,
            "lookup_ip",
            ipv4_private(pl.col("_int")).alias(C.IS_PRIVATE),
            ipv4_prefix24("lookup_ip").alias(C.PREFIX),
            pl.lit(None, pl.String).alias(C.PREFIX48),
        )
    )
    other = _ipv6_rows(frame.filter(~is_v4).get_column(C.SOURCE_IP).to_list())
    return pl.concat([v4, other], how="vertical_relaxed")


def _record_fields(city: dict[str, Any] | None) -> tuple[Any, Any, Any, Any]:
    if not city:
        return None, None, None, None
    country = (city.get("country") or city.get("registered_country") or {}).get("iso_code")
    names = (city.get("city") or {}).get("names") or {}
    name = names.get("en") or next(iter(names.values()), None)
    location = city.get("location") or {}
    return country, name, location.get("latitude"), location.get("longitude")


def _lookup(reader: Any, ip: str, path: Path) -> dict[str, Any] | None:
    try:
        return reader.get(ip)
    except maxminddb.InvalidDatabaseError as e:
        raise EnrichmentError(f"corrupt GeoIP database: {e}", path=path) from e
    except ValueError:  # an IPv6 address in an IPv4-only database
        return None


def lookup_addresses(
    addresses: Sequence[str], databases: GeoIPDatabases | None, *, hosting_asns: Iterable[int] = ()
) -> pl.DataFrame:
    """The :data:`ADDRESS_SCHEMA` table for ``addresses`` (distinct or not; nulls dropped).

    Columns of a missing database are null; flags of a present Anonymous-IP database are false for
    addresses it does not list; private and invalid addresses get null geography and flags.
    ``hosting_asns`` also mark their addresses as hosting.
    """
    table = classify(addresses)
    public = table.filter(pl.col(C.IS_PRIVATE).not_() & pl.col("lookup_ip").is_not_null())
    ips = public.get_column("lookup_ip").to_list()
    n = len(ips)
    cols: dict[str, list[Any]] = {name: [None] * n for name in GEO_COLUMNS}
    databases = databases or GeoIPDatabases()
    if (db := databases.city) is not None:
        reader = open_reader(db.path)
        try:
            for i, ip in enumerate(ips):
                (cols[C.COUNTRY][i], cols[C.CITY][i], cols[C.LATITUDE][i], cols[C.LONGITUDE][i]) = (
                    _record_fields(_lookup(reader, ip, db.path))
                )
        finally:
            reader.close()
    if (db := databases.asn) is not None:
        reader = open_reader(db.path)
        try:
            for i, ip in enumerate(ips):
                rec = _lookup(reader, ip, db.path) or {}
                cols[C.ASN][i] = rec.get("autonomous_system_number")
                cols[C.AS_ORG][i] = rec.get("autonomous_system_organization")
        finally:
            reader.close()
    if (db := databases.anonymous_ip) is not None:
        reader = open_reader(db.path)
        try:
            for i, ip in enumerate(ips):
                rec = _lookup(reader, ip, db.path) or {}
                cols[C.IS_HOSTING][i] = bool(rec.get("is_hosting_provider", False))
                cols[C.IS_VPN][i] = bool(rec.get("is_anonymous_vpn", False))
                cols[C.IS_TOR][i] = bool(rec.get("is_tor_exit_node", False))
        finally:
            reader.close()
    geo = pl.DataFrame(
        {"lookup_ip": ips, **cols},
        schema={"lookup_ip": pl.String, **{c: ADDRESS_SCHEMA[c] for c in GEO_COLUMNS}},
    ).unique("lookup_ip")
    hosting = sorted({int(a) for a in hosting_asns})
    out = table.join(geo, on="lookup_ip", how="left").with_columns(
        pl.when(pl.col(C.ASN).is_in(hosting)).then(True).otherwise(pl.col(C.IS_HOSTING)).alias(C.IS_HOSTING)
    )
    return out.select([pl.col(c).cast(t) for c, t in ADDRESS_SCHEMA.items()])
