"""The plan's guards: what no input can make the plan block.

Attackers write into the logs (user names, HELO names, form fields), so a parser bug or a forged
field can put any text where an address belongs. Whatever reaches the plan, a block is refused
when its target

- is not a valid address, CIDR or ``AS<n>`` (or not a single address where one is expected);
- is wider than ``[plan] widest_block_v4`` (default /16) or ``widest_block_v6`` (/32);
- lies inside, or holds, a never-block network: the reserved ranges below (private, loopback,
  link-local, shared CGNAT, multicast, reserved, unspecified) plus ``[plan] allowlist`` (the
  provider's own and partner networks). IPv4-mapped IPv6 addresses are checked as IPv4.

AS numbers are blocked only through the AS rules of :mod:`detector.recommend.scope` (hosting, VPN
or Tor networks nobody legitimate uses, never a listed AS nor one holding a listed network seen in
the logs); an AS expanded into its prefixes by an export is not a block of the plan. The
documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) stay
blockable. :func:`detector.recommend.scope.choose_blocks` consults the guard at every width (a
refused wide block falls back to narrower ones, so the protected part is never taken), and
:func:`detector.recommend.plan.recommend` checks every block of the finished plan once more.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from detector.config import PlanConfig
from detector.enrich.geoip import PRIVATE_V4, PRIVATE_V6
from detector.recommend import nets

RESERVED: tuple[str, ...] = (*PRIVATE_V4, "100.64.0.0/10", *PRIVATE_V6)
"""Networks no plan blocks, whatever the configuration: never an attacker's public address (the
private and reserved ranges enrichment knows, and CGNAT, whose users share addresses)."""

WHY_INVALID = "not a valid address or network"
WHY_NOT_ADDRESS = "not a single address"
WHY_NOT_ASN = "not an AS number"

_V4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
"""A canonical dotted quad (no leading zeros, every octet at most 255)."""
_CHARS = re.compile(r"^[0-9A-Fa-f:.]+(/\d{1,3})?$")
"""The only characters an address or a CIDR is written with."""

GUARD_WARNING = "plan guard:"
"""How every warning of the guards begins (the text summary always shows them)."""

MAX_NAMED = 10
"""Refused targets a warning names (the total is always given)."""


def _v4_view(net: Any) -> Any:
    """An IPv4-mapped IPv6 network as the IPv4 network it maps (others unchanged)."""
    if net.version == 6 and net.prefixlen >= 96:
        mapped = ipaddress.IPv6Address(int(net.network_address)).ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network((int(mapped), net.prefixlen - 96))
    return net


def shown(text: Any, limit: int = 64) -> str:
    """A hostile value as printable ASCII for a warning or a log line (escaped, truncated)."""
    out = str(text).encode("ascii", "backslashreplace").decode("ascii")
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in out)
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass(frozen=True)
class Guard:
    """The never-block networks and the widest prefixes of a plan (:meth:`from_config`)."""

    reserved: tuple[Any, ...]
    listed: tuple[Any, ...]
    listed_asns: frozenset[str]
    widest_v4: int
    widest_v6: int

    @classmethod
    def from_config(cls, cfg: PlanConfig) -> Guard:
        listed = nets.parse_nets(cfg.allowlist)
        return cls(
            reserved=tuple(ipaddress.ip_network(t) for t in RESERVED),
            listed=tuple(
                _v4_view(ipaddress.ip_network(nets.cidr_text(n))) for n in listed if n.kind != nets.ASN
            ),
            listed_asns=frozenset(n.text for n in listed if n.kind == nets.ASN),
            widest_v4=cfg.widest_block_v4,
            widest_v6=cfg.widest_block_v6,
        )

    @property
    def never(self) -> tuple[Any, ...]:
        return self.reserved + self.listed

    def _touching(self, net: Any) -> str | None:
        for n in self.reserved:
            if n.version == net.version and n.overlaps(net):
                return f"reserved network {n} (never blocked)"
        for n in self.listed:
            if n.version == net.version and n.overlaps(net):
                return f"allow-listed network {n}"
        return None

    def refusal(self, text: Any, *, address: bool = False) -> str | None:
        """Why ``text`` (an address, a CIDR; with ``address``, a single address only) may not be
        blocked, or ``None``. AS numbers: :meth:`asn_refusal`."""
        if not isinstance(text, str) or not _CHARS.match(text):
            return WHY_INVALID  # spaces, zone ids, control characters, anything an export could misread
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            return WHY_INVALID
        if address and "/" in text:
            return WHY_NOT_ADDRESS
        net = _v4_view(net)
        widest = self.widest_v4 if net.version == 4 else self.widest_v6
        if net.prefixlen < widest:
            return f"wider than /{widest} (the widest block, [plan] widest_block_v{net.version})"
        return self._touching(net)

    def asn_refusal(self, text: Any) -> str | None:
        net = nets.parse_net(text) if isinstance(text, str) else None
        if net is None or net.kind != nets.ASN or net.text != text:
            return WHY_NOT_ASN
        if text in self.listed_asns:
            return "allow-listed network"
        return None

    def addresses(self, addresses: pl.Series) -> pl.DataFrame:
        """``source_ip``, ``why`` for every distinct address that may not be blocked.

        Canonical IPv4 addresses are checked with vectorised cuts (:func:`nets.containing`); the
        rest (IPv6, anything malformed) one distinct value at a time.
        """
        schema = {"source_ip": pl.String, "why": pl.String}
        distinct = (
            pl.DataFrame({"source_ip": addresses}, schema={"source_ip": pl.String}).drop_nulls().unique()
        )
        is_v4 = pl.col("source_ip").str.contains(_V4).fill_null(False)
        v4 = distinct.filter(is_v4).get_column("source_ip")
        others = distinct.filter(~is_v4).get_column("source_ip").to_list()
        rows = [(a, why) for a in others if (why := self.refusal(a, address=True)) is not None]
        never = [nets.Net(nets.CIDR, str(n), 4, n.prefixlen) for n in self.never if n.version == 4]
        inside = nets.containing(v4, never).unique("source_ip", keep="first", maintain_order=True)
        hits = {a: self._touching(ipaddress.ip_network(a)) for a in inside.get_column("source_ip").to_list()}
        rows += [(a, why) for a, why in hits.items() if why is not None]
        return pl.DataFrame(rows, schema=schema, orient="row").sort("source_ip")

    def blocks(self, plan: pl.DataFrame) -> pl.DataFrame:
        """``target_type``, ``target``, ``why`` of the plan's block rows the guard refuses
        (addresses checked as in :meth:`addresses`, the fewer CIDRs and AS numbers one by one)."""
        schema = {"target_type": pl.String, "target": pl.String, "why": pl.String}
        blocks = plan.filter(pl.col("action") == "block").select("target_type", "target")
        ips = blocks.filter(pl.col("target_type") == "ip").get_column("target")
        rows = [("ip", a, why) for a, why in self.addresses(ips).iter_rows()]
        rows += [("ip", None, WHY_INVALID)] * ips.null_count()
        for kind, target in blocks.filter(pl.col("target_type") != "ip").iter_rows():
            if kind == "asn":
                why = self.asn_refusal(target)
            elif kind == "cidr":
                why = self.refusal(target)
            else:
                why = f"unknown target type {shown(kind)}"
            if why is not None:
                rows.append((kind, target, why))
        return pl.DataFrame(rows, schema=schema, orient="row")


def warnings(refused: pl.DataFrame) -> list[str]:
    """One warning per reason: how many targets the guard refused and the first of them, escaped.

    ``refused``: ``target`` (or ``key``/``source_ip``) and ``why`` columns.
    """
    if refused.is_empty():
        return []
    target = next(c for c in ("target", "key", "source_ip") if c in refused.columns)
    out = []
    for (why,), group in refused.unique([target, "why"]).sort(target).group_by("why", maintain_order=True):
        names = [shown(t) for t in group.get_column(target).to_list()]
        more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        out.append(
            f"{GUARD_WARNING} {len(names)} block(s) refused ({why}): {', '.join(names[:MAX_NAMED])}{more};"
            " their sources are left unblocked and their targets protected instead"
        )
    return out
