"""End to end on data/samples: ingest, enrich, detect, and judge every detector against the labels."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector.config import Config

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SAMPLES / "labels" / "incidents.csv").exists(), reason="data/samples not generated"
    ),
]


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory):
    from detector.detect import detect
    from detector.detect.quality import detector_quality
    from detector.enrich import enrich, find_databases, load_practitioners
    from detector.features import update_history
    from detector.ingest import ingest
    from detector.labels import label_events, read_labels

    cfg = Config()
    logs = sorted(str(p) for p in (SAMPLES / "logs").rglob("*") if p.is_file())
    ingested = ingest(logs, cfg.ingest, tmp_path_factory.mktemp("work"))
    enriched = enrich(
        ingested.events,
        geoip=find_databases(str(SAMPLES / "geoip")),
        practitioners=load_practitioners(SAMPLES / "practitioners.csv"),
        cfg=cfg.enrich,
    ).events.collect()
    d = detect(enriched.lazy(), cfg)
    events = label_events(d.events, read_labels(SAMPLES / "labels" / "incidents.csv")).collect()
    return d, events, enriched, detector_quality(d.findings, events), update_history


ATTACKS = ["brute_force", "password_spraying", "credential_stuffing", "distributed_brute_force", "send_burst"]


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_detectors_fire_and_are_precise(judged, name: str):
    _, _, _, per_finding, _ = judged
    mine = per_finding.filter(pl.col("detector") == name)
    assert mine.height == 1, f"{name} never fired on the sample world"
    assert mine["finding_precision"][0] >= 0.9


def test_suspicious_success_is_mostly_right(judged):
    _, _, _, per_finding, _ = judged
    mine = per_finding.filter(pl.col("detector") == "suspicious_success")
    assert mine["finding_precision"][0] >= 0.6


@pytest.mark.parametrize("name", ["stale_password_device", "typo_then_success", "shared_address"])
def test_benign_explainers_explain_benign_events(judged, name: str):
    _, _, _, per_finding, _ = judged
    mine = per_finding.filter(pl.col("detector") == name)
    assert mine.height == 1
    assert mine["finding_precision"][0] <= 0.05


def test_takeover_logins_and_campaign_families_are_found(judged):
    _, events, _, _, _ = judged
    from detector.detect.quality import technique_recall

    recall = technique_recall(events).filter(pl.col("action") == "login")
    got = dict(zip(recall["label_technique"], recall["recall"], strict=True))
    for family, floor in {
        "account_takeover": 0.9,
        "brute_force": 0.9,
        "password_spraying": 0.9,
        "credential_stuffing": 0.7,
        "distributed_brute_force": 0.8,
    }.items():
        if family in got:
            assert got[family] >= floor, (family, got[family])


def test_history_from_the_sample_round_trips(judged):
    d, _, enriched, _, update_history = judged
    from detector.features import History

    hist = update_history(None, enriched.lazy())
    again = History.from_frames(hist.to_frames())
    assert again.accounts.height == hist.accounts.height > 0
    assert d.campaigns.height >= 1
    assert d.findings["finding_id"].n_unique() == d.findings.height
