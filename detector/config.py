"""Configuration: every threshold, budget and allow-list, with defaults, loaded from TOML.

Sections are frozen dataclasses; unknown keys are errors with a did-you-mean hint. Detector
thresholds live under ``[detectors.<name>]`` and are validated by the detector registry, so that
tuning a detector is a configuration change. Nothing is read at import time: call :func:`load`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from detector.errors import ConfigError, did_you_mean

RANGE = "range"
"""Field metadata key holding a key's :class:`Range` (every key of every section has one)."""
KERNEL_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Range:
    """The values a configuration key accepts, checked on every construction of its section.

    Numbers: ``lo``/``hi`` bounds (``lo_open``: ``lo`` itself excluded); ``nan`` and infinities are
    always refused. Other values: ``check`` returns why a value is refused (``None``: accepted) and
    ``text`` says what is accepted. A list key applies its range to each item; ``optional`` admits
    ``None`` (the key unset).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    optional: bool = False
    check: Callable[[Any], str | None] | None = None
    text: str | None = None

    def describe(self) -> str:
        if self.text is not None:
            words = self.text
        else:
            left = "(" if self.lo_open else "["
            lo = "-inf" if self.lo is None else _number(self.lo)
            hi = "inf" if self.hi is None else _number(self.hi)
            words = f"{left}{lo}, {hi}]"
        return f"{words}, or unset" if self.optional else words

    def error(self, value: Any) -> str | None:
        """Why ``value`` is out of range, or ``None``."""
        if value is None:
            return None if self.optional else "must be set"
        if isinstance(value, tuple | list):
            return next((f"item {v!r}: {e}" for v in value if (e := self._one(v))), None)
        return self._one(value)

    def _one(self, value: Any) -> str | None:
        if self.check is not None:
            return self.check(value)
        if isinstance(value, bool):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number in {self.describe()}, got {value}"
        below = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        above = self.hi is not None and value > self.hi
        if below or above:
            return f"must be in {self.describe()}, got {value!r}"
        return None


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def key(default: Any, rng: Range) -> Any:
    """A configuration field with its default and its :class:`Range`."""
    return field(default=default, metadata={RANGE: rng})


def _is_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _time_zone(value: Any) -> str | None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        hint = did_you_mean(str(value), zoneinfo.available_timezones())
        return f"unknown time zone {value!r}" + (f" ({hint})" if hint else "")
    return None


_DURATION = re.compile(r"^[1-9]\d*(us|ms|s|m|h|d|w)$")


def _duration(value: Any) -> str | None:
    if isinstance(value, str) and _DURATION.match(value):
        return None
    return f"must be a positive duration such as 30m, 6h or 1d, got {value!r}"


def _kernel_mode(value: Any) -> str | None:
    if value in KERNEL_MODES:
        return None
    hint = did_you_mean(str(value), KERNEL_MODES)
    return f"must be one of {', '.join(KERNEL_MODES)}, got {value!r}" + (f" ({hint})" if hint else "")


def _path(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"must be a path, got {value!r}"


_AS = re.compile(r"^\s*AS(\d+)\s*$", re.IGNORECASE)


def _network(value: Any) -> str | None:
    """An address, a CIDR or ``AS<n>`` (the same forms the plan accepts)."""
    text = str(value).strip()
    m = _AS.match(text)
    if m:
        return None if int(m.group(1)) < 2**32 else f"AS number out of range: {value!r}"
    try:
        ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        return f"{value!r} is neither an address, a CIDR nor AS<n> (e.g. 192.0.2.0/24 or AS64500)"
    return None


BOOL = Range(check=_is_bool, text="true or false")
SHARE = Range(0.0, 1.0)
THRESHOLD = Range(0.0, 1.0, lo_open=True)
"""A risk threshold: risks are in [0, 1], and a threshold of 0 would flag everything."""
COUNT = Range(0, 10**9)
AT_LEAST_ONE = Range(1, 10**9)
HOURS = Range(0.0, 8760.0, lo_open=True)
"""A measure's lifetime: more than nothing, at most a year."""
ASN = Range(0, 2**32 - 1)


def check_ranges(section: Any) -> None:
    """Raise :class:`ConfigError` naming the first key of ``section`` outside its range."""
    for f in dataclasses.fields(section):
        rng = f.metadata.get(RANGE)
        if rng is None:
            continue
        why = rng.error(getattr(section, f.name))
        if why is not None:
            raise ConfigError(f"[{section.SECTION}] {f.name} {why}")


class _Section:
    """Base of the sections: every construction (TOML, ``replace``, code) checks the key ranges."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class IngestConfig(_Section):
    SECTION: ClassVar[str] = "ingest"
    year: int | None = key(None, Range(1970, 9999, optional=True))
    """Year of RFC 3164 stamps; default: inferred from each file's modification time."""
    timezone: str = key("UTC", Range(check=_time_zone, text="an IANA time zone name (UTC, Europe/Paris)"))
    """Time zone of stamps without an offset."""
    max_line_bytes: int = key(65536, Range(256, 1 << 30))
    """Longer lines are quarantined as too_long."""
    chunk_bytes: int = key(16 * 1024 * 1024, Range(1024, 1 << 34))
    """Decompressed bytes parsed per batch (bounds memory)."""
    pairing_memory_bytes: int = key(128 * 1024 * 1024, Range(1024, 1 << 40))
    """Memory for pairing Dovecot logouts with their logins at the end of ingestion (more partitions below)."""
    kernel: str = key("auto", Range(check=_kernel_mode, text="auto, on or off"))
    """Compiled fast path for the commonest lines: ``auto`` (where numba is installed), ``on``, ``off``."""


@dataclass(frozen=True)
class EngineConfig(_Section):
    SECTION: ClassVar[str] = "engine"
    workers: int = key(1, Range(0, 4096))
    """Worker processes (ingestion batches, detection and scoring shards); 0: the cores available to
    the process; 1 (the default: on 2 cores worker processes cost more CPU and memory than they
    saved, docs/operations.md): everything in the job's process."""
    sort_events: int = key(1_000_000, Range(1, 2**40))
    """Events detection sorts at once when it numbers the night (time ranges of about this many
    events, each sorted on its own): the memory of that sort grows with it."""

    def resolved_workers(self) -> int:
        """``workers``, with 0 read as the cores this process may run on."""
        from detector.workers import worker_count

        return worker_count(self.workers)


@dataclass(frozen=True)
class EnrichConfig(_Section):
    SECTION: ClassVar[str] = "enrich"
    geoip_dir: str | None = key(None, Range(check=_path, text="a directory path", optional=True))
    """Directory with GeoLite2-City/Country, GeoLite2-ASN and GeoIP2-Anonymous-IP .mmdb files."""
    hosting_asns: tuple[int, ...] = key((), ASN)
    """ASNs to treat as hosting even where the Anonymous-IP database says nothing."""


@dataclass(frozen=True)
class ScoringConfig(_Section):
    SECTION: ClassVar[str] = "scoring"
    account_compromised: float = key(0.5, THRESHOLD)
    """Account risk at or above which the verdict is compromised."""
    account_suspicious: float = key(0.2, THRESHOLD)
    """Account risk at or above which the verdict is suspicious (at most ``account_compromised``)."""
    source_malicious: float = key(0.5, THRESHOLD)
    """Source risk at or above which the verdict is malicious."""
    source_suspicious: float = key(0.2, THRESHOLD)
    """Source risk at or above which the verdict is suspicious (at most ``source_malicious``)."""
    shared_address_min_accounts: int = key(3, Range(2, 10**9))
    """Distinct accounts with legitimate logins that make an address 'shared'."""
    takeover_failed_accounts: int = key(3, AT_LEAST_ONE)
    """A success from a malicious, unshared source that failed on this many accounts is a takeover."""
    takeover_failed_attempts: int = key(10, AT_LEAST_ONE)
    """... or that failed this many times on the account itself (a brute-forced login)."""
    takeover_network_sources: int = key(3, COUNT)
    """A success from a hosting address in an AS where this many unshared malicious hosting addresses
    attack tonight, into an account that never logged in from that AS, is a takeover (0 = off)."""
    takeover_anonymous_new: bool = key(True, BOOL)
    """A success scored at least ``account_compromised`` from a Tor exit or a rented hosting address
    (not a VPN exit, not shared), into an account that logged in before but never from that /24, is
    a takeover even when the account model explains it away."""
    owner_vpn: bool = key(False, BOOL)
    """An account whose every success scored at least ``account_compromised`` came through a VPN exit
    of an AS it had logged in from before (past its cold start), with no mailbox download or send
    burst, is at most suspicious: its owner is a customer of a VPN that attackers also use (opt-in:
    on fresh worlds it cost more compromised accounts found than the false locks it removed)."""


@dataclass(frozen=True)
class PlanConfig(_Section):
    SECTION: ClassVar[str] = "plan"
    collateral_budget_accounts: int = key(0, COUNT)
    """Legitimate accounts a block may hit before a narrower measure is preferred."""
    collateral_budget_practitioners: int = key(0, COUNT)
    """Of which practitioners."""
    block_hours: float = key(24.0, HOURS)
    """Lifetime of blocks and locks."""
    restrict_hours: float = key(72.0, HOURS)
    """Lifetime of restrictions."""
    lock_while_active: bool = key(False, BOOL)
    """Also lock compromised accounts while the attacker is active."""
    allowlist: tuple[str, ...] = key((), Range(check=_network, text="addresses, CIDRs and AS<n>"))
    """Never-block networks the user adds (own networks, the health insurer, partners): CIDRs and
    AS<n>, on top of the reserved ranges every plan refuses to block (docs/response-plan.md)."""
    widest_block_v4: int = key(16, Range(8, 32))
    """The widest IPv4 prefix a block of the plan may take (a /16 by default); AS blocks apart."""
    widest_block_v6: int = key(32, Range(16, 128))
    """The widest IPv6 prefix a block of the plan may take (a /32 by default)."""
    shutdown: bool = key(False, BOOL)
    """External access is shut down: plan reopening waves."""
    prefix_min_sources: int = key(2, AT_LEAST_ONE)
    """Attacking addresses in one /24 (/64) that widen a block to the prefix (a campaign's: 1)."""
    asn_min_sources: int = key(3, AT_LEAST_ONE)
    """Attacking addresses in one AS that widen a block to the AS (only with no legitimate user)."""
    act_on_suspicious_failures: int = key(20, COUNT)
    """Failed logins that make a suspicious source one the plan acts on, like a malicious one (0: never)."""
    carve_max_addresses: int = key(16, Range(0, 4096))
    """Legitimate users' addresses a hosting/VPN/Tor prefix block may exempt (0: no such blocks)."""
    restrict_min_attempts: int = key(5, AT_LEAST_ONE)
    """Attack attempts that get a targeted account restricted even though its attackers are blocked."""
    restrict_min_sources: int = key(3, AT_LEAST_ONE)
    """Attacking sources that get a targeted account restricted even though they are blocked."""
    restrict_unseen_min_attempts: int = key(10, COUNT)
    """Attack attempts that get an account with no known legitimate login restricted (0: never)."""
    restrict_light: bool = key(True, BOOL)
    """Restrict every other account in the attackers' lists (not practitioners) to its own and the mainstream networks."""
    mainstream_share: float = key(0.02, SHARE)
    """Share of the accounts with legitimate logins an AS needs to be a mainstream network (0: none)."""
    widen_residential: bool = key(False, BOOL)
    """Also widen blocks of residential/mobile attackers to their AS, and a lone campaign address to its /24."""
    restrict_distributed_sources: int = key(20, COUNT)
    """Attacking sources that make a targeted account's restriction its own networks only, practitioners too (0: never)."""
    restrict_light_practitioners: bool = key(True, BOOL)
    """Lightly restrict practitioners in the attackers' lists too, on SMTP AUTH only (smtp, submission)."""
    restrict_new_network: bool = key(True, BOOL)
    """Lightly restrict an account with a legitimate-looking login from an AS it never used on earlier nights."""
    restrict_light_smtp_own: bool = key(False, BOOL)
    """A light restriction allows SMTP AUTH (smtp, submission) from the account's own networks only."""


@dataclass(frozen=True)
class StateConfig(_Section):
    SECTION: ClassVar[str] = "state"
    horizon_days: int = key(90, Range(1, 3660))
    """History older than this is dropped from the state."""
    generations: int = key(8, Range(2, 1000))
    """State generations kept, the current one included: re-running one of the last
    generations - 1 nights reproduces its reports; older generations (personal data) are deleted."""


@dataclass(frozen=True)
class FeaturesConfig(_Section):
    SECTION: ClassVar[str] = "features"
    window: str = key("1d", Range(check=_duration, text="a positive polars duration (30m, 6h, 1d)"))
    """Time bucket for per-window counts (polars duration: 30m, 6h, 1d)."""
    baseline_alpha: float = key(5.0, Range(0.0, 1e6))
    """Pseudo-count pulling an account's value frequencies towards the population (smoothing)."""
    cold_start_successes: int = key(5, COUNT)
    """Accounts with fewer earlier successful logins lean on the population (no 'new network' flags)."""


@dataclass(frozen=True)
class ServeConfig(_Section):
    """Thresholds of ``detector serve``, the login-time policy service (docs/serve.md)."""

    SECTION: ClassVar[str] = "serve"

    window_seconds: int = key(3600, Range(60, 86400))
    """Length of the sliding windows the live failure counters cover."""
    bucket_seconds: int = key(300, Range(1, 3600))
    """Resolution of the sliding windows (a window is window_seconds / bucket_seconds buckets)."""
    source_failures: int = key(20, COUNT)
    """Failed logins from one address within the window before its logins are tarpitted (0: never)."""
    source_accounts: int = key(5, COUNT)
    """Distinct accounts failing from one address within the window before its logins are tarpitted
    (0: never): stuffing and spraying, not a phone retrying an old password behind a shared address."""
    prefix_failures: int = key(30, COUNT)
    """Failed logins from one /24 (IPv4) or /64 (IPv6) within the window before tarpitting (0: never)."""
    account_failures: int = key(10, COUNT)
    """Failed logins to one account within the window before tarpitting it, except from the owner's recent addresses (0: never)."""
    reject_source_failures: int = key(0, COUNT)
    """Failed logins from one address within the window before its logins are refused outright (0: never; shared addresses make it risky)."""
    tarpit_seconds: int = key(2, Range(0, 60))
    """Tarpit per multiple of a threshold reached (2 failures x threshold: twice this)."""
    tarpit_max_seconds: int = key(15, Range(0, 600))
    """Longest tarpit answered."""
    known_source_hours: int = key(24, Range(0, 8760))
    """A successful login makes its address the account's own for this long (no account tarpit from it)."""
    max_tracked_keys: int = key(500_000, Range(1000, 10**9))
    """Most keys (addresses, prefixes, accounts) each live counter holds (about 350 bytes a key); new keys beyond it are not counted."""
    max_connections: int = key(1024, Range(1, 100000))
    """Most simultaneous client connections per listener; more are closed at once (fail-open)."""
    reload_check_seconds: float = key(2.0, Range(0.01, 3600.0))
    """How often the plan file (and the control file) are checked for a new version."""


SECTIONS: tuple[type, ...] = (
    IngestConfig,
    EngineConfig,
    EnrichConfig,
    ScoringConfig,
    PlanConfig,
    StateConfig,
    FeaturesConfig,
    ServeConfig,
)
"""Every section with ranged keys (``[detectors.<name>]`` is checked by the detector registry)."""

ORDERED: tuple[tuple[str, str, str], ...] = (
    ("scoring", "account_suspicious", "account_compromised"),
    ("scoring", "source_suspicious", "source_malicious"),
)
"""(section, lower, upper): a suspicious threshold above the matching compromised/malicious one
would leave the suspicious verdict unreachable."""


@dataclass(frozen=True)
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    enrich: EnrichConfig = field(default_factory=EnrichConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    state: StateConfig = field(default_factory=StateConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-detector parameters, ``[detectors.brute_force] min_failures = 20``; ``enabled = false`` disables one."""

    def __post_init__(self) -> None:
        for section, lower, upper in ORDERED:
            part = getattr(self, section)
            if getattr(part, lower) > getattr(part, upper):
                raise ConfigError(
                    f"[{section}] {lower} = {getattr(part, lower)!r} is above {upper} = {getattr(part, upper)!r}",
                    hint=f"{lower} must not exceed {upper}",
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the effective configuration, recorded in every report."""
        values = self.to_dict()
        # how many processes compute a report, and in what pieces, does not change it (nor digests of earlier configurations)
        engine = values.pop("engine")
        engine.pop("workers")
        engine.pop("sort_events")
        if engine:
            values["engine"] = engine
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **sections: Any) -> Config:
        """A copy with some section fields replaced: ``cfg.replace(ingest={"year": 2025})``."""
        changes = {
            name: dataclasses.replace(getattr(self, name), **values)
            if dataclasses.is_dataclass(getattr(self, name))
            else values
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changes)

    def overridden(self, **sections: dict[str, Any]) -> Config:
        """:meth:`replace` with only the values given (``None``: keep the configured one), as
        command-line options override ``--config``: ``cfg.overridden(ingest={"year": None})``."""
        given = {
            name: {k: v for k, v in values.items() if v is not None} for name, values in sections.items()
        }
        return self.replace(**{name: values for name, values in given.items() if values})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table")
        return from_mapping(hint, value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list")
        return tuple(_coerce(v, args[0], where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def from_mapping(cls: type, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            loc = f"[{where}] " if where else ""
            raise ConfigError(f"unknown configuration key {loc}{key!r}", hint=did_you_mean(key, names))
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


DEFAULT_PATH = Path("/etc/detector/detector.toml")
"""The configuration file every command reads when given no ``--config`` (if it exists)."""
ENV_VAR = "DETECTOR_CONFIG"
"""Names the configuration file instead of :data:`DEFAULT_PATH` (then it must exist)."""


def default_path() -> Path | None:
    """``$DETECTOR_CONFIG``, else :data:`DEFAULT_PATH` when it exists, else ``None`` (the defaults)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def load(path: str | Path | None = None) -> Config:
    """The effective configuration: defaults, overridden by the TOML file at ``path``
    (by default :func:`default_path`: ``$DETECTOR_CONFIG`` or ``/etc/detector/detector.toml``)."""
    if path is None:
        path = default_path()
    if path is None:
        return Config()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError("configuration file not found", path=p) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}", path=p) from e
    try:
        cfg = from_mapping(Config, data)
        if cfg.detectors:  # checked now, not after the long steps of a run
            from detector.detect.registry import configure

            configure(cfg)
        return cfg
    except ConfigError as e:
        e.path = str(p)
        raise
