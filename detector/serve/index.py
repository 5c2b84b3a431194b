"""The plan in force, indexed for login-time lookups: blocks by network, measures by account.

Built once per plan version (a few hundred milliseconds for 100,000 measures) and never mutated:
a reload builds a new :class:`PlanIndex` and swaps it in with one assignment, so a request sees
either the old plan or the new one, never half of each.

Addresses are matched by cutting the address at each prefix length the plan uses and looking the
integer network up in a dict: a handful of dict lookups per request, whatever the plan's size.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from detector.recommend import nets

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AsnOf = Callable[[Address], int | None]

BLOCK = "block"
LOCK = "lock_account"
RESET = "reset_credentials"
RESTRICT = "restrict_account"
REOPEN = "reopen"


@dataclass(frozen=True)
class Networks:
    """A set of CIDRs and AS numbers, matched against one address at a time."""

    by_length: dict[tuple[int, int], frozenset[int]] = field(default_factory=dict)
    asns: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, texts: Iterable[str] | None) -> Networks:
        """Unparseable texts are skipped: the plan is checked when it is written."""
        table: dict[tuple[int, int], set[int]] = {}
        asns: set[int] = set()
        for text in texts or ():
            key = network_key(text or "")
            if key is None:
                continue
            if key[0] == 0:
                asns.add(key[2])
            else:
                table.setdefault(key[:2], set()).add(key[2])
        return cls({k: frozenset(v) for k, v in table.items()}, frozenset(asns))

    def __bool__(self) -> bool:
        return bool(self.by_length or self.asns)

    def contains(self, ip: Address, asn: int | None) -> bool:
        value, bits = int(ip), ip.max_prefixlen
        for (version, length), keys in self.by_length.items():
            if version == ip.version and (value >> (bits - length)) in keys:
                return True
        return asn is not None and asn in self.asns


@dataclass(frozen=True)
class Measure:
    """One plan row as the service applies it."""

    measure_id: str
    action: str
    services: frozenset[str]
    """Empty: every service."""
    expires_at: float | None
    """Epoch seconds; ``None``: no expiry."""
    allowed: Networks = field(default_factory=Networks)

    def applies(self, services: tuple[str, ...], now: float) -> bool:
        """In force at ``now`` for one of ``services`` (the names a request's service goes by; none
        known: only all-service measures apply)."""
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return not self.services or any(s in self.services for s in services)


@dataclass
class AccountEntry:
    """Every measure naming one account."""

    locks: list[Measure] = field(default_factory=list)
    restrictions: list[Measure] = field(default_factory=list)
    reset: Measure | None = None
    wave: int | None = None


@dataclass(frozen=True)
class PlanIndex:
    """The plan's blocks, account measures and reopening waves, ready for lookups."""

    blocks: dict[tuple[int, int], dict[int, list[Measure]]]
    asn_blocks: dict[int, list[Measure]]
    accounts: dict[str, AccountEntry]
    local_parts: dict[str, str | None]
    """Local part -> the one account with it (``None`` when several domains share it)."""
    max_wave: int | None
    counts: dict[str, int]
    """Measures per action, for the metrics."""

    @classmethod
    def empty(cls) -> PlanIndex:
        return cls({}, {}, {}, {}, None, {})

    @property
    def size(self) -> int:
        return sum(self.counts.values())

    def blocked(self, ip: Address, asn: int | None, services: tuple[str, ...], now: float) -> Measure | None:
        """The first block in force that covers ``ip`` for ``service`` and does not spare it."""
        value, bits = int(ip), ip.max_prefixlen
        candidates: list[Measure] = []
        for (version, length), table in self.blocks.items():
            if version == ip.version:
                candidates.extend(table.get(value >> (bits - length), ()))
        if asn is not None:
            candidates.extend(self.asn_blocks.get(asn, ()))
        for m in candidates:
            if m.applies(services, now) and not m.allowed.contains(ip, asn):
                return m
        return None

    def account(self, login: str) -> tuple[str, AccountEntry | None]:
        """The account a login names (lower-cased; a bare local part when it is unambiguous)."""
        name = normalise_login(login)
        entry = self.accounts.get(name)
        if entry is None and "@" not in name:
            full = self.local_parts.get(name)
            if full is not None:
                return full, self.accounts[full]
        return name, entry


def network_key(text: str) -> tuple[int, int, int] | None:
    """``(version, prefix length, network >> host bits)`` of an address or CIDR, ``(0, 0, n)`` of
    ``AS<n>``, ``None`` otherwise. The plan's canonical texts go through ``inet_pton`` (C, a
    microsecond); anything else through :func:`detector.recommend.nets.parse_net`."""
    if text[:2] in ("AS", "as") and text[2:].isdigit():
        return (0, 0, int(text[2:]))
    addr, _, length_text = text.partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in addr else (socket.AF_INET, 32)
    try:
        value = int.from_bytes(socket.inet_pton(family, addr), "big")
        length = int(length_text) if length_text else bits
    except (OSError, ValueError):
        n = nets.parse_net(text)
        if n is None:
            return None
        if n.asn is not None:
            return (0, 0, n.asn)
        net = ipaddress.ip_network(nets.cidr_text(n), strict=False)
        return (net.version, net.prefixlen, int(net.network_address) >> (net.max_prefixlen - net.prefixlen))
    if not 0 <= length <= bits:
        return None
    return (4 if bits == 32 else 6, length, value >> (bits - length))


def normalise_login(login: str) -> str:
    return login.strip().lower()


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def build_index(plan: pl.DataFrame, *, now: datetime | None = None) -> PlanIndex:
    """Index a plan (``RECOMMENDATION_SCHEMA``); measures expired at ``now`` are left out."""
    cutoff = _epoch(now)
    blocks: dict[tuple[int, int], dict[int, list[Measure]]] = {}
    asn_blocks: dict[int, list[Measure]] = {}
    accounts: dict[str, AccountEntry] = {}
    counts: dict[str, int] = {}
    allowed_cache: dict[tuple[str, ...], Networks] = {}
    columns = ["measure_id", "action", "target", "services", "allowed_networks", "wave", "expires_at"]
    wanted = plan.filter(pl.col("action").is_in([BLOCK, LOCK, RESET, RESTRICT, REOPEN])).select(columns)
    for mid, action, target, services, allowed, wave, expires in wanted.iter_rows():
        expires_at = _epoch(expires)
        if cutoff is not None and expires_at is not None and expires_at <= cutoff:
            continue
        key = tuple(allowed or ())
        networks = allowed_cache.get(key)
        if networks is None:
            networks = allowed_cache[key] = Networks.parse(key)
        m = Measure(mid or "", action, frozenset(services or ()), expires_at, networks)
        if action == BLOCK:
            if not _add_block(blocks, asn_blocks, target or "", m):
                continue
        else:
            entry = accounts.setdefault(normalise_login(target or ""), AccountEntry())
            if action == LOCK:
                entry.locks.append(m)
            elif action == RESTRICT:
                entry.restrictions.append(m)
            elif action == RESET:
                entry.reset = m
            elif wave is not None:
                entry.wave = int(wave)
        counts[action] = counts.get(action, 0) + 1
    local: dict[str, str | None] = {}
    for name in accounts:
        if "@" in name:
            part = name.split("@", 1)[0]
            local[part] = None if part in local else name
    waves = [e.wave for e in accounts.values() if e.wave is not None]
    return PlanIndex(blocks, asn_blocks, accounts, local, max(waves) if waves else None, counts)


def _add_block(
    blocks: dict[tuple[int, int], dict[int, list[Measure]]],
    asn_blocks: dict[int, list[Measure]],
    target: str,
    m: Measure,
) -> bool:
    key = network_key(target)
    if key is None:
        return False
    if key[0] == 0:
        asn_blocks.setdefault(key[2], []).append(m)
    else:
        blocks.setdefault(key[:2], {}).setdefault(key[2], []).append(m)
    return True
