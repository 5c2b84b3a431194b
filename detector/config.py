"""Configuration: every threshold, budget and allow-list, with defaults, loaded from TOML.

Sections are frozen dataclasses; unknown keys are errors with a did-you-mean hint. Detector
thresholds live under ``[detectors.<name>]`` and are validated by the detector registry, so that
tuning a detector is a configuration change. Nothing is read at import time: call :func:`load`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.errors import ConfigError, did_you_mean

KERNEL_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class IngestConfig:
    year: int | None = None
    """Year of RFC 3164 stamps; default: inferred from each file's modification time."""
    timezone: str = "UTC"
    """Time zone of stamps without an offset."""
    max_line_bytes: int = 65536
    """Longer lines are quarantined as too_long."""
    chunk_bytes: int = 16 * 1024 * 1024
    """Decompressed bytes parsed per batch (bounds memory)."""
    kernel: str = "auto"
    """Compiled fast path for the commonest lines: ``auto`` (where numba is installed), ``on``, ``off``."""

    def __post_init__(self) -> None:
        if self.kernel not in KERNEL_MODES:
            raise ConfigError(
                f"ingest.kernel must be one of {', '.join(KERNEL_MODES)}, got {self.kernel!r}",
                hint=did_you_mean(self.kernel, KERNEL_MODES),
            )


@dataclass(frozen=True)
class EnrichConfig:
    geoip_dir: str | None = None
    """Directory with GeoLite2-City/Country, GeoLite2-ASN and GeoIP2-Anonymous-IP .mmdb files."""
    hosting_asns: tuple[int, ...] = ()
    """ASNs to treat as hosting even where the Anonymous-IP database says nothing."""


@dataclass(frozen=True)
class ScoringConfig:
    account_compromised: float = 0.5
    """Account risk at or above which the verdict is compromised."""
    account_suspicious: float = 0.2
    source_malicious: float = 0.5
    source_suspicious: float = 0.2
    shared_address_min_accounts: int = 3
    """Distinct accounts with legitimate logins that make an address 'shared'."""
    takeover_failed_accounts: int = 3
    """A success from a malicious, unshared source that failed on this many accounts is a takeover."""
    takeover_failed_attempts: int = 10
    """... or that failed this many times on the account itself (a brute-forced login)."""
    takeover_network_sources: int = 3
    """A success from a hosting address in an AS where this many unshared malicious hosting addresses
    attack tonight, into an account that never logged in from that AS, is a takeover (0 = off)."""


@dataclass(frozen=True)
class PlanConfig:
    collateral_budget_accounts: int = 0
    """Legitimate accounts a block may hit before a narrower measure is preferred."""
    collateral_budget_practitioners: int = 0
    block_hours: float = 24.0
    restrict_hours: float = 72.0
    lock_while_active: bool = False
    """Also lock compromised accounts while the attacker is active."""
    allowlist: tuple[str, ...] = ()
    """CIDRs and AS<n> that are never blocked (own networks, the health insurer, partners)."""
    shutdown: bool = False
    """External access is shut down: plan reopening waves."""
    prefix_min_sources: int = 2
    """Attacking addresses in one /24 (/64) that widen a block to the prefix (a campaign's: 1)."""
    asn_min_sources: int = 3
    """Attacking addresses in one AS that widen a block to the AS (only with no legitimate user)."""
    act_on_suspicious_failures: int = 20
    """Failed logins that make a suspicious source one the plan acts on, like a malicious one (0: never)."""
    carve_max_addresses: int = 16
    """Legitimate users' addresses a hosting/VPN/Tor prefix block may exempt (0: no such blocks)."""
    restrict_min_attempts: int = 5
    """Attack attempts that get a targeted account restricted even though its attackers are blocked."""
    restrict_min_sources: int = 3
    """Attacking sources that get a targeted account restricted even though they are blocked."""
    restrict_unseen_min_attempts: int = 10
    """Attack attempts that get an account with no known legitimate login restricted (0: never)."""
    restrict_light: bool = True
    """Restrict every other account in the attackers' lists (not practitioners) to its own and the mainstream networks."""
    mainstream_share: float = 0.02
    """Share of the accounts with legitimate logins an AS needs to be a mainstream network (0: none)."""
    widen_residential: bool = False
    """Also widen blocks of residential/mobile attackers to their AS, and a lone campaign address to its /24."""
    restrict_distributed_sources: int = 20
    """Attacking sources that make a targeted account's restriction its own networks only, practitioners too (0: never)."""
    restrict_light_practitioners: bool = True
    """Lightly restrict practitioners in the attackers' lists too, on SMTP AUTH only (smtp, submission)."""


@dataclass(frozen=True)
class StateConfig:
    horizon_days: int = 90
    """History older than this is dropped from the state."""


@dataclass(frozen=True)
class FeaturesConfig:
    window: str = "1d"
    """Time bucket for per-window counts (polars duration: 30m, 6h, 1d)."""
    baseline_alpha: float = 5.0
    """Pseudo-count pulling an account's value frequencies towards the population (smoothing)."""
    cold_start_successes: int = 5
    """Accounts with fewer earlier successful logins lean on the population (no 'new network' flags)."""


@dataclass(frozen=True)
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    enrich: EnrichConfig = field(default_factory=EnrichConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    state: StateConfig = field(default_factory=StateConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-detector parameters, ``[detectors.brute_force] min_failures = 20``; ``enabled = false`` disables one."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the effective configuration, recorded in every report."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
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


def load(path: str | Path | None = None) -> Config:
    """The effective configuration: defaults, overridden by the TOML file at ``path``."""
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
        return from_mapping(Config, data)
    except ConfigError as e:
        e.path = str(p)
        raise
