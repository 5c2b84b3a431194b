"""Registry: every detector carries its SOC metadata, is documented, and is tuned through configuration."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import polars as pl
import pytest

from detector import config as cfgmod
from detector.config import Config
from detector.detect import FINDING_SCHEMA, REGISTRY, configure, detect, get
from detector.detect.findings import CAMPAIGN_SCHEMA, ENTITY_TYPES
from detector.detect.registry import KINDS, SEVERITIES
from detector.errors import ConfigError, SchemaError
from detector.features import FEATURE_COLUMNS, HIT_DETECTORS
from detector.features.testing import make_events

DOCS = Path(__file__).resolve().parent.parent / "docs" / "detectors.md"
TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
META = ("technique", "tactic", "severity", "description", "false_positives", "triage", "affected")

configure(Config())  # load the built-ins
NAMES = sorted(REGISTRY)


def test_builtins_match_the_hit_features():
    assert set(NAMES) == set(HIT_DETECTORS)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_complete(name: str):
    det = REGISTRY[name]
    for field in META:
        value = getattr(det, field)
        assert isinstance(value, str) and len(value.strip()) >= 3, f"{name}.{field} is empty"
    assert TECHNIQUE.match(det.technique), det.technique
    assert det.severity in SEVERITIES and det.kind in KINDS
    assert dataclasses.is_dataclass(det.params) and det.params.__dataclass_params__.frozen
    params = det.build()
    assert dataclasses.fields(params), f"{name} has no parameters"


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_is_documented_in_code(name: str):
    import inspect

    source = inspect.getsource(REGISTRY[name].params)
    for f in dataclasses.fields(REGISTRY[name].params):
        after = source.split(f"    {f.name}:", 1)[1].split("\n", 2)
        assert after[1].strip().startswith('"""'), f"{name}.{f.name} has no docstring"


def _section(name: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(rf"^## `?{re.escape(name)}`?\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, f"docs/detectors.md has no section '## {name}'"
    return m.group(1)


@pytest.mark.parametrize("name", NAMES)
def test_documented(name: str):
    body = _section(name)
    det = REGISTRY[name]
    assert det.technique in body
    for heading in ("Fires when", "Parameters", "Evidence", "False positives", "Triage", "Affected"):
        assert heading in body, f"{name}: section lacks '{heading}'"
    for f in dataclasses.fields(det.params):
        assert f"`{f.name}`" in body, f"{name}: parameter {f.name} not documented"
        shown = {str(f.default), repr(f.default), str(f.default).lower()}
        assert any(s in body for s in shown), f"{name}: default of {f.name} not documented"


def test_feature_columns_documented():
    text = DOCS.read_text(encoding="utf-8")
    missing = [c for c in FEATURE_COLUMNS if f"`{c}`" not in text and not c.startswith("hit_")]
    assert not missing, f"features not in docs/detectors.md: {missing}"


def test_unknown_detector_and_key_are_config_errors_with_hints():
    with pytest.raises(ConfigError, match="unknown detector") as e:
        configure(Config(detectors={"brute_forse": {}}))
    assert "brute_force" in (e.value.hint or "")
    with pytest.raises(ConfigError, match="min_failure") as e:
        configure(Config(detectors={"brute_force": {"min_failure": 3}}))
    assert "min_failures" in (e.value.hint or "")
    with pytest.raises(ConfigError):
        get("nope")


@pytest.mark.parametrize(
    "table",
    [
        {"min_failures": "ten"},
        {"min_failures": -1},
        {"enabled": "no"},
    ],
)
def test_bad_values_are_config_errors(table: dict):
    with pytest.raises(ConfigError):
        configure(Config(detectors={"brute_force": table}))


def test_bad_duration_is_a_config_error():
    with pytest.raises(ConfigError, match="duration"):
        configure(Config(detectors={"credential_stuffing": {"slot_window": "an hour"}}))
    with pytest.raises(ConfigError, match="window"):
        detect(make_events([{"t": 1}]), Config().replace(features={"window": "daily"}))


def test_toml_configuration_reaches_the_detector(tmp_path: Path):
    p = tmp_path / "c.toml"
    p.write_text(
        "[detectors.brute_force]\nmin_failures = 25\n\n[detectors.typo_then_success]\nenabled = false\n"
    )
    conf = configure(cfgmod.load(p))
    assert conf["brute_force"].params.min_failures == 25
    assert conf["typo_then_success"].enabled is False and conf["brute_force"].enabled is True


def test_disabled_detectors_produce_nothing():
    rows = [
        {"t": i, "outcome": "failure", "source_ip": "198.51.100.7", "password_hash": f"h{i}"}
        for i in range(30)
    ]
    off = {n: {"enabled": False} for n in NAMES}
    d = detect(make_events(rows), Config(detectors=off))
    assert d.findings.is_empty() and d.findings.schema == FINDING_SCHEMA
    ev = d.events.collect()
    assert ev["detectors"].list.len().sum() == 0 and ev["hit_brute_force"].sum() == 0


def test_findings_and_campaigns_follow_their_schemas():
    rows = [
        {"t": i, "outcome": "failure", "source_ip": "198.51.100.7", "password_hash": f"h{i}"}
        for i in range(30)
    ]
    d = detect(make_events(rows), Config())
    assert d.findings.schema == FINDING_SCHEMA and d.campaigns.schema == CAMPAIGN_SCHEMA
    assert set(d.findings["entity_type"]) <= set(ENTITY_TYPES)
    assert d.findings["score"].is_between(0, 1).all()


def test_input_without_enrichment_is_a_schema_error():
    lf = make_events([{"t": 1}]).drop("asn")
    with pytest.raises(SchemaError, match="asn"):
        detect(lf, Config())


def test_empty_input():
    lf = make_events([{"t": 1}]).filter(pl.lit(False))
    d = detect(lf, Config())
    assert d.findings.is_empty() and d.events.collect().height == 0 and d.campaigns.is_empty()


def test_quality_figures_on_a_tiny_labelled_frame():
    from detector.detect.quality import detector_quality, technique_recall

    rows = [
        {"t": i, "outcome": "failure", "source_ip": "198.51.100.7", "password_hash": f"h{i}"}
        for i in range(12)
    ]
    rows.append({"t": 100, "account": "bob@example.org"})
    d = detect(make_events(rows), Config())
    events = d.events.collect().with_columns(
        is_attack=pl.col("source_ip") == "198.51.100.7",
        label_technique=pl.when(pl.col("source_ip") == "198.51.100.7").then(pl.lit("brute_force")),
    )
    q = detector_quality(d.findings, events).filter(pl.col("detector") == "brute_force").row(0, named=True)
    assert q["findings"] == 1 and q["finding_precision"] == 1.0 and q["events"] == 12
    r = technique_recall(events).row(0, named=True)
    assert r["label_technique"] == "brute_force" and r["recall"] == 1.0
