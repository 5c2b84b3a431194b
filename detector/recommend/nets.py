"""Networks as plan targets: canonical text for addresses, CIDRs and AS numbers, and matching.

A plan names networks three ways: an address (``198.51.100.7``), a CIDR (``203.0.113.0/24``,
``2001:db8:1:2::/64``) or an AS number (``AS64500``). Matching many events against many networks
is done by cutting each *distinct* address at each prefix length the networks use and joining on
the canonical text, so the cost is (distinct addresses) x (distinct lengths), never a per-event
Python loop. IPv4 is cut with integer expressions; IPv6 (rarer) with ``ipaddress`` per distinct
address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from detector.errors import ConfigError

_ASN = re.compile(r"^\s*AS(\d+)\s*$", re.IGNORECASE)
_V4 = r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$"

IP = "ip"
CIDR = "cidr"
ASN = "asn"

NET = "net"
"""Column holding a canonical network text in the frames this module returns."""


@dataclass(frozen=True)
class Net:
    """A parsed network: ``kind`` is ip, cidr or asn; ``text`` the canonical form."""

    kind: str
    text: str
    version: int | None = None
    length: int | None = None
    asn: int | None = None


def parse_net(text: str) -> Net | None:
    """``"AS64500"``, an address or a CIDR -> :class:`Net`; ``None`` when it is none of them."""
    m = _ASN.match(text)
    if m:
        return Net(ASN, f"AS{int(m.group(1))}", asn=int(m.group(1)))
    try:
        if "/" in text:
            net = ipaddress.ip_network(text.strip(), strict=False)
            return Net(CIDR, str(net), net.version, net.prefixlen)
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return Net(IP, str(addr), addr.version, addr.max_prefixlen)


def parse_nets(texts: Iterable[str], *, what: str = "allowlist") -> list[Net]:
    """Parse configured networks, raising :class:`ConfigError` on the first bad one."""
    out = []
    for t in texts:
        net = parse_net(t)
        if net is None:
            raise ConfigError(
                f"{what}: {t!r} is neither an address, a CIDR nor AS<n>", hint="e.g. 192.0.2.0/24 or AS64500"
            )
        out.append(net)
    return out


def cidr_text(net: Net) -> str:
    """The network as a CIDR (an address becomes /32 or /128); AS numbers unchanged."""
    if net.kind == IP:
        return f"{net.text}/{net.length}"
    return net.text


def ipv4_int(column: str) -> pl.Expr:
    """Dotted quad -> UInt32 (null when the text is not an IPv4 address)."""
    parts = pl.col(column).str.split(".")
    value = (
        parts.list.get(0, null_on_oob=True).cast(pl.UInt64, strict=False) * (1 << 24)
        + parts.list.get(1, null_on_oob=True).cast(pl.UInt64, strict=False) * (1 << 16)
        + parts.list.get(2, null_on_oob=True).cast(pl.UInt64, strict=False) * (1 << 8)
        + parts.list.get(3, null_on_oob=True).cast(pl.UInt64, strict=False)
    )
    return pl.when(pl.col(column).str.contains(_V4)).then(value)


def _v4_cut(column: str, length: int) -> pl.Expr:
    mask = ((1 << 32) - 1) ^ ((1 << (32 - length)) - 1)
    n = ipv4_int(column).and_(pl.lit(mask, pl.UInt64))
    return pl.concat_str(
        [
            (n // (1 << 24) % 256).cast(pl.String),
            (n // (1 << 16) % 256).cast(pl.String),
            (n // (1 << 8) % 256).cast(pl.String),
            (n % 256).cast(pl.String),
        ],
        separator=".",
    ) + pl.lit(f"/{length}")


def _v6_cut(addresses: list[str], length: int) -> list[str | None]:
    out: list[str | None] = []
    for a in addresses:
        try:
            out.append(
                str(
                    ipaddress.IPv6Network((int(ipaddress.IPv6Address(a.split("%")[0])), length), strict=False)
                )
            )
        except ValueError:
            out.append(None)
    return out


def containing(addresses: pl.Series, nets: Iterable[Net]) -> pl.DataFrame:
    """Pairs (``source_ip``, ``net``) for every distinct address inside one of the address/CIDR nets.

    ``net`` is :func:`cidr_text` of the network, so callers join on it. AS numbers are ignored here
    (match them on the ``asn`` column).
    """
    wanted = [n for n in nets if n.kind != ASN]
    schema = {"source_ip": pl.String, NET: pl.String}
    if not wanted or addresses.len() == 0:
        return pl.DataFrame(schema=schema)
    texts = pl.DataFrame({NET: sorted({cidr_text(n) for n in wanted})}, schema={NET: pl.String})
    ips = pl.DataFrame({"source_ip": addresses}, schema={"source_ip": pl.String}).drop_nulls().unique()
    is_v4 = ips.select(pl.col("source_ip").str.contains(_V4)).to_series()
    v4, v6 = ips.filter(is_v4), ips.filter(~is_v4)
    parts = []
    for length in sorted({n.length for n in wanted if n.version == 4}):
        parts.append(v4.select("source_ip", _v4_cut("source_ip", length).alias(NET)))
    v6_list = v6.get_column("source_ip").to_list()
    for length in sorted({n.length for n in wanted if n.version == 6}):
        if v6_list:
            parts.append(pl.DataFrame({"source_ip": v6_list, NET: _v6_cut(v6_list, length)}, schema=schema))
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).join(texts, on=NET, how="semi").unique().sort("source_ip", NET)


def overlaps(a: Net, b: Net) -> bool:
    """Whether two address/CIDR networks share an address (AS numbers: equal numbers)."""
    if a.kind == ASN or b.kind == ASN:
        return a.kind == b.kind and a.asn == b.asn
    na, nb = ipaddress.ip_network(cidr_text(a)), ipaddress.ip_network(cidr_text(b))
    return na.version == nb.version and na.overlaps(nb)


def asn_networks(path: str | Path, asns: Iterable[int]) -> dict[int, list[Any]]:
    """The networks an ASN database (GeoLite2-ASN format) assigns to each of ``asns``, collapsed.

    The database is walked once (a real GeoLite2-ASN holds about half a million networks: a second
    or two); adjacent networks of one AS are merged into the fewest CIDRs, IPv4 before IPv6.

    Raises:
        EnrichmentError: the database cannot be opened or walked.
    """
    import maxminddb

    from detector.enrich.geoip import open_reader
    from detector.errors import EnrichmentError

    wanted = set(asns)
    found: dict[int, list[Any]] = {a: [] for a in wanted}
    if not wanted:
        return found
    reader = open_reader(Path(path))
    try:
        for network, record in reader:
            asn = record.get("autonomous_system_number") if isinstance(record, dict) else None
            if asn in wanted:
                found[asn].append(network)
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as e:
        raise EnrichmentError(f"cannot read the ASN database: {e}", path=path) from e
    finally:
        reader.close()
    return {
        a: [n for v in (4, 6) for n in ipaddress.collapse_addresses(x for x in found[a] if x.version == v)]
        for a in sorted(found)
    }
