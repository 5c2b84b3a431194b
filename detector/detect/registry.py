"""Detectors are named units looked up by name and built from configuration.

A :class:`Detector` carries its SOC metadata (ATT&CK technique and tactic, severity, what fires
it, known false positives, a triage note, who acting on it would affect), a frozen ``Params``
dataclass of thresholds with defaults, and a pure function ``(events, params) -> findings``.
``[detectors.<name>]`` in the configuration overrides parameters; ``enabled = false`` turns a
detector off; unknown names and keys are :class:`~detector.errors.ConfigError` with a hint.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from detector.config import Config, from_mapping
from detector.errors import ConfigError, did_you_mean

DetectFn = Callable[[pl.LazyFrame, Any], pl.LazyFrame]

SEVERITIES = ("info", "low", "medium", "high", "critical")
KINDS = ("attack", "benign")
SCOPES = ("account", "source")
_DURATION = re.compile(r"^\d+(us|ms|s|m|h|d)$")


@dataclass(frozen=True)
class Detector:
    """One explainable detector.

    ``kind`` is ``attack`` (raises risk) or ``benign`` (an explanation that lowers risk); a benign
    explainer's ``technique`` names the technique whose false positive it explains.
    """

    name: str
    technique: str
    tactic: str
    severity: str
    kind: str
    description: str
    false_positives: str
    triage: str
    affected: str
    params: type
    fn: DetectFn
    scope: str = "account"
    """``account``: it groups the rows of one account at a time (it runs per account shard and may
    read any column of the feature frame); ``source``: it groups across accounts (by source, prefix,
    ASN, password or campaign) and runs once over the login events, reading only
    ``detector.detect.shards.SOURCE_SCOPE_COLUMNS``."""

    def build(self, overrides: dict[str, Any] | None = None) -> Any:
        """Params from defaults and ``overrides`` (a ``[detectors.<name>]`` table without ``enabled``)."""
        params = from_mapping(self.params, dict(overrides or {}), f"detectors.{self.name}")
        for f in dataclasses.fields(params):
            value = getattr(params, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"[detectors.{self.name}] {f.name} must be a finite number, got {value!r}")
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"[detectors.{self.name}] {f.name} must not be negative, got {value!r}")
            if f.name.endswith("window") and isinstance(value, str) and not _DURATION.match(value):
                raise ConfigError(
                    f"[detectors.{self.name}] {f.name} must be a duration such as 30m, 6h or 1d, got {value!r}"
                )
        return params


REGISTRY: dict[str, Detector] = {}


def register(detector: Detector) -> Detector:
    if detector.name in REGISTRY:
        raise ValueError(f"detector {detector.name!r} registered twice")
    if detector.severity not in SEVERITIES or detector.kind not in KINDS or detector.scope not in SCOPES:
        raise ValueError(f"detector {detector.name!r}: bad severity, kind or scope")
    REGISTRY[detector.name] = detector
    return detector


def get(name: str) -> Detector:
    _load_builtins()
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown detector {name!r}", hint=did_you_mean(name, REGISTRY)) from None


@dataclass(frozen=True)
class Configured:
    detector: Detector
    params: Any
    enabled: bool


def configure(cfg: Config) -> dict[str, Configured]:
    """Every registered detector with its parameters from ``cfg.detectors`` (validated)."""
    _load_builtins()
    for name in cfg.detectors:
        if name not in REGISTRY:
            raise ConfigError(f"unknown detector [detectors.{name}]", hint=did_you_mean(name, REGISTRY))
    out = {}
    for name, det in REGISTRY.items():
        table = dict(cfg.detectors.get(name) or {})
        enabled = table.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"[detectors.{name}] enabled must be true or false, got {enabled!r}")
        out[name] = Configured(det, det.build(table), enabled)
    return out


def _load_builtins() -> None:
    import detector.detect.detectors  # noqa: F401  (registers the built-in detectors)


def effective(cfg: Config) -> dict[str, Any]:
    """The effective configuration as a mapping, with every detector's parameters filled in.

    What ``detector config show`` prints: ``[detectors.<name>]`` lists each registered detector's
    thresholds (defaults, or the configured values) and whether it is enabled.
    """
    data = cfg.to_dict()
    data["detectors"] = {
        name: {"enabled": c.enabled, **dataclasses.asdict(c.params)}
        for name, c in sorted(configure(cfg).items())
    }
    return data
