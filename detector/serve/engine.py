"""The login-time decision: one function answers Dovecot's ``allow`` and Postfix's policy requests.

Every request field is attacker-controlled (the user name, the password behind the hash, the
protocol a client claims): :func:`login_request` validates each one and drops what does not
pass, so a rule never sees an unchecked value, and no request value is ever echoed back (answers
carry fixed texts). The service is fail-open: anything unexpected answers "allow".

Rules, first match wins (``evaluate``):

1. ``block``: the address is in a block in force for the service, outside the block's spared networks;
2. ``lock``: the account is locked for the service;
3. ``stolen_password``: the account was reset, its owner has since logged in with a new password,
   and this request carries the old one (Dovecot's password hash);
4. ``restrict``: the account is restricted and the external address is outside its networks;
5. ``reopen_wave``: access is being reopened wave by wave and the account's wave is not open yet;
6. ``compromised`` (sending only): the account was judged compromised and its password has not changed;
7. ``reject_source`` / ``tarpit_*``: live counters (failures per address, distinct accounts failing
   per address, failures per /24 or /64, per account except from the owner's recent addresses) over
   a sliding window.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detector.config import ServeConfig
from detector.serve.index import AccountEntry, Address, AsnOf, PlanIndex
from detector.serve.windows import Counter, Expiring

MAX_LOGIN = 320
MAX_ADDRESS = 64
MAX_HASH = 128
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]")

SERVICES: dict[str, tuple[str, ...]] = {
    "imap": ("imap",),
    "pop3": ("pop3",),
    "smtp": ("smtp", "submission"),
    "submission": ("submission", "smtp"),
    "sieve": ("managesieve",),
    "managesieve": ("managesieve",),
    "webmail": ("webmail",),
}
"""Dovecot's service name (``%s``) -> the plan's service names it matches. Postfix's SASL goes
through Dovecot as ``smtp`` on every port, so SMTP AUTH matches both ``smtp`` and ``submission``."""

ALLOW = 0
REJECT = -1

MESSAGES = {
    "block": "access from this network is suspended",
    "lock": "this account is temporarily locked",
    "stolen_password": "this password is no longer valid",
    "restrict": "access to this account is limited to its usual networks",
    "reopen_wave": "access to this account has not been reopened yet",
    "compromised": "sending is suspended until the password is changed",
    "reject_source": "too many failed logins from this address",
}
"""Fixed answer texts (never built from request values)."""


@dataclass(frozen=True)
class LoginRequest:
    """A validated request: ``None`` wherever the field was missing or invalid."""

    login: str | None
    ip: Address | None
    pwhash: str | None
    services: tuple[str, ...]
    service: str | None


@dataclass(frozen=True)
class Decision:
    status: int
    """-1 refuse, 0 allow, n > 0 tarpit seconds (Dovecot's meaning)."""
    rule: str
    measure_id: str | None = None

    @property
    def message(self) -> str:
        return MESSAGES.get(self.rule, "")


ALLOWED = Decision(ALLOW, "allow")


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        return None
    return value


def parse_address(value: Any) -> Address | None:
    """A client address, or ``None``: bounded, no zone, IPv4-mapped IPv6 turned into IPv4."""
    text = _text(value, MAX_ADDRESS)
    if text is None or "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def login_request(
    fields: Mapping[str, Any], *, login_key: str = "login", address_key: str = "remote", service: Any = None
) -> LoginRequest:
    """Validate the fields of a Dovecot request (or a Postfix one, with its keys)."""
    login = _text(fields.get(login_key), MAX_LOGIN)
    pwhash = _text(fields.get("pwhash"), MAX_HASH)
    if pwhash is not None and not _HEX.match(pwhash):
        pwhash = None
    proto = _text(service if service is not None else fields.get("protocol"), 32)
    name = proto.lower() if proto is not None and proto.lower() in SERVICES else None
    return LoginRequest(
        login=login.strip().lower() if login else None,
        ip=parse_address(fields.get(address_key)),
        pwhash=pwhash.lower() if pwhash else None,
        services=SERVICES.get(name, ()) if name else (),
        service=name,
    )


def is_external(ip: Address) -> bool:
    """Restrictions and waves apply to external addresses (private ones are the provider's own); the
    same test as the replay's (``detector.recommend.replay``), so both apply the plan alike."""
    return not (ip.is_private or ip.is_loopback or ip.is_link_local)


def prefix_key(ip: Address) -> tuple[int, int]:
    """The /24 (IPv4) or /64 (IPv6) the address is in, as (version, network integer)."""
    return (4, int(ip) >> 8) if ip.version == 4 else (6, int(ip) >> 64)


@dataclass
class Control:
    """The operator's word, from the control file: the open reopening wave, changed passwords."""

    open_wave: int | None = None
    password_changed: frozenset[str] = frozenset()


@dataclass
class ResetState:
    """What the service learnt of a reset account: the password hash in use when the plan named it
    (the stolen one) and when a success with another hash showed the owner changed it."""

    stolen: str | None = None
    changed_at: float | None = None


@dataclass
class Engine:
    """The plan in force plus the live state; ``evaluate`` and ``report`` are its whole surface."""

    index: PlanIndex
    cfg: ServeConfig = field(default_factory=ServeConfig)
    asn_of: AsnOf | None = None
    control: Control = field(default_factory=Control)
    resets: dict[str, ResetState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.cfg
        self.by_source = Counter(c.window_seconds, c.bucket_seconds, c.max_tracked_keys)
        self.by_prefix = Counter(c.window_seconds, c.bucket_seconds, c.max_tracked_keys)
        self.by_account = Counter(c.window_seconds, c.bucket_seconds, c.max_tracked_keys)
        self.by_source_accounts = Counter(c.window_seconds, c.bucket_seconds, c.max_tracked_keys)
        self.failed_pairs = Expiring(float(c.window_seconds), c.max_tracked_keys)
        """(address, account) pairs that failed within the window: distinct accounts per address."""
        self.known = Expiring(c.known_source_hours * 3600.0, c.max_tracked_keys)
        self.dirty = False
        """The reset state changed since it was last saved."""

    def _asn(self, ip: Address) -> int | None:
        if self.asn_of is None:
            return None
        return self.asn_of(ip)

    def password_changed(self, account: str) -> bool:
        st = self.resets.get(account)
        return (st is not None and st.changed_at is not None) or account in self.control.password_changed

    def evaluate(self, req: LoginRequest, now: float, *, sending: bool = False) -> Decision:
        """The answer for a login (``sending``: a Postfix request for an authenticated sender)."""
        index = self.index
        ip = req.ip
        asn = self._asn(ip) if ip is not None and index.asn_blocks else None
        if ip is not None:
            m = index.blocked(ip, asn, req.services, now)
            if m is not None:
                return Decision(REJECT, "block", m.measure_id)
        account, entry = index.account(req.login) if req.login else (None, None)
        if account is not None and entry is not None:
            decision = self._account_rules(account, entry, req, ip, asn, now, sending)
            if decision is not None:
                return decision
        if sending or ip is None:
            return ALLOWED
        return self._live(account, ip, now)

    def _account_rules(
        self,
        account: str,
        entry: AccountEntry,
        req: LoginRequest,
        ip: Address | None,
        asn: int | None,
        now: float,
        sending: bool,
    ) -> Decision | None:
        for m in entry.locks:
            if m.applies(req.services, now):
                return Decision(REJECT, "lock", m.measure_id)
        reset = entry.reset
        if reset is not None and req.pwhash is not None:
            st = self.resets.get(account)
            if st is not None and st.changed_at is not None and st.stolen == req.pwhash:
                return Decision(REJECT, "stolen_password", reset.measure_id)
        external = ip is not None and is_external(ip)
        if external:
            if asn is None and ip is not None and any(m.allowed.asns for m in entry.restrictions):
                asn = self._asn(ip)  # looked up only when a restriction allows an AS
            for m in entry.restrictions:
                if m.applies(req.services, now) and not m.allowed.contains(ip, asn):
                    return Decision(REJECT, "restrict", m.measure_id)
        open_wave = self.control.open_wave
        if external and open_wave is not None and self.index.max_wave is not None:
            wave = entry.wave if entry.wave is not None else self.index.max_wave
            if wave > open_wave:
                return Decision(REJECT, "reopen_wave")
        if sending and reset is not None and not self.password_changed(account):
            return Decision(REJECT, "compromised", reset.measure_id)
        return None

    def _live(self, account: str | None, ip: Address, now: float) -> Decision:
        """Tarpit (or refuse) from the live counters, except an account's login from an address it
        logged in from successfully within ``known_source_hours``: its owner behind a shared
        address (a hospital's NAT, a carrier's CGNAT) is not slowed for its neighbours' failures."""
        c = self.cfg
        src = self.by_source.count(ip, now)
        if c.reject_source_failures and src >= c.reject_source_failures:
            return Decision(REJECT, "reject_source")
        if account is not None and self.known.recent((account, ip), now):
            return ALLOWED
        best = ALLOWED
        candidates = (
            ("tarpit_source", src, c.source_failures),
            ("tarpit_source_accounts", self.by_source_accounts.count(ip, now), c.source_accounts),
            ("tarpit_prefix", self.by_prefix.count(prefix_key(ip), now), c.prefix_failures),
            ("tarpit_account", self.by_account.count(account, now) if account else 0, c.account_failures),
        )
        for rule, count, threshold in candidates:
            if threshold and count >= threshold:
                seconds = min(c.tarpit_max_seconds, c.tarpit_seconds * (count // threshold))
                if seconds > best.status:
                    best = Decision(seconds, rule)
        return best

    def report(self, req: LoginRequest, success: bool, policy_reject: bool, now: float) -> None:
        """Learn from an outcome Dovecot reports: failures feed the counters; a success makes its
        address the owner's and, for a reset account, tells the stolen password from a new one."""
        ip = req.ip
        account = self.index.account(req.login)[0] if req.login else None
        if success and not policy_reject:
            if account is not None and ip is not None:
                self.known.touch((account, ip), now)
            if account is not None and req.pwhash is not None:
                self._learn_password(account, req.pwhash, now)
            return
        if ip is not None:
            self.by_source.add(ip, now)
            self.by_prefix.add(prefix_key(ip), now)
            if account is not None and not self.failed_pairs.recent((ip, account), now):
                self.by_source_accounts.add(ip, now)
            if account is not None:
                self.failed_pairs.touch((ip, account), now)
        if account is not None:
            self.by_account.add(account, now)

    def _learn_password(self, account: str, pwhash: str, now: float) -> None:
        entry = self.index.accounts.get(account)
        if entry is None or entry.reset is None:
            return
        st = self.resets.setdefault(account, ResetState())
        if st.stolen is None and account in self.control.password_changed:
            return
        if st.stolen is None:
            st.stolen = pwhash
            self.dirty = True
        elif st.changed_at is None and pwhash != st.stolen:
            st.changed_at = now
            self.dirty = True

    def prune_resets(self) -> None:
        """Forget what was learnt of accounts the plan no longer resets: the episode is over, and a
        later reset of the account starts afresh (its first password seen is the stolen one)."""
        kept = {a: st for a, st in self.resets.items() if (e := self.index.accounts.get(a)) and e.reset}
        if len(kept) != len(self.resets):
            self.resets = kept
            self.dirty = True

    def sweep(self, now: float) -> None:
        for counter in (self.by_source, self.by_prefix, self.by_account, self.by_source_accounts):
            counter.sweep(now)
        self.known.sweep(now)
        self.failed_pairs.sweep(now)
