"""Saving and loading a model: round trip, and every way a file is refused."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import skops.io as sio
from score_frames import FEATURES, Det, synthetic_world

from detector.config import Config
from detector.errors import ModelError
from detector.score import load_model, save_model, score
from detector.score.io import TRUSTED_TYPES, model_paths, read_card
from detector.score.train import fit_model

DETECTORS = ("brute_force", "credential_stuffing", "suspicious_success", "typo_then_success")


@pytest.fixture(scope="module")
def trained():
    events, compromised = synthetic_world(0, 60)
    model, summary = fit_model(
        events, compromised, feature_columns=FEATURES, detector_names=DETECTORS, max_iter=15
    )
    return model, summary


@pytest.fixture
def saved(tmp_path, trained):
    model, summary = trained
    return save_model(model, tmp_path / "tiny", card={"training": summary})


def test_round_trip_predicts_the_same(saved, trained) -> None:
    loaded = load_model(saved.path)
    events, _ = synthetic_world(1, 30)
    det = Det(events.drop("is_attack").lazy())
    a = score(det, trained[0], Config())
    b = score(det, loaded, Config())
    assert np.allclose(a.events["risk_score"].to_numpy(), b.events["risk_score"].to_numpy())
    assert a.accounts.equals(b.accounts)
    assert loaded.event_features == trained[0].event_features
    assert loaded.model_id == saved.model_id
    assert loaded.card_sha256 and len(loaded.card_sha256) == 64


@pytest.mark.parametrize("name", ["tiny", "tiny.skops", "tiny.card.json"])
def test_any_of_the_three_names_loads(saved, tmp_path, name) -> None:
    assert load_model(tmp_path / name).model_id == saved.model_id


def test_card_describes_the_model(saved) -> None:
    card = read_card(saved.path)
    assert card["features"]["event"][: len(FEATURES)] == list(FEATURES)
    assert card["training"]["compromised_accounts"] > 0
    assert set(card["versions"]) >= {"python", "sklearn", "skops", "polars", "detector"}
    assert len(card["sha256"]) == 64 and card["created_at"]
    assert card["model_id"].startswith("tiny-")


def test_tampered_file_is_refused(saved) -> None:
    model_file, _ = model_paths(saved.path)
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_model(model_file)


@pytest.mark.parametrize("lib", ["sklearn", "skops"])
def test_other_library_version_is_refused(saved, lib) -> None:
    _, card_file = model_paths(saved.path)
    card = json.loads(card_file.read_text())
    card["versions"][lib] = "0.1.0"
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=f"saved with {lib} 0.1.0") as e:
        load_model(saved.path)
    assert e.value.exit_code == 2


def test_missing_card_is_refused(saved) -> None:
    _, card_file = model_paths(saved.path)
    card_file.unlink()
    with pytest.raises(ModelError, match="card not found"):
        load_model(saved.path)


def test_missing_file_is_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nothing.skops")


def test_untrusted_type_is_refused(tmp_path) -> None:
    from collections import Counter

    model_file, card_file = model_paths(tmp_path / "evil")
    sio.dump({"event": Counter(a=1)}, model_file, compression=zipfile.ZIP_DEFLATED)
    from detector.score.io import library_versions, sha256_file

    card_file.write_text(json.dumps({"sha256": sha256_file(model_file), "versions": library_versions()}))
    with pytest.raises(ModelError, match=r"not trusted: collections\.Counter"):
        load_model(model_file)
    assert "collections.Counter" not in TRUSTED_TYPES


@pytest.mark.parametrize("lib", ["sklearn", "skops"])
def test_check_model_refuses_what_load_model_refuses_without_loading(saved, lib) -> None:
    from detector.score.io import check_model

    assert check_model(saved.path)["sha256"] == saved.card["sha256"]
    _, card_file = model_paths(saved.path)
    card = json.loads(card_file.read_text())
    card["versions"][lib] = "0.1.0"
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=f"saved with {lib} 0.1.0"):
        check_model(saved.path)


def test_importing_the_score_package_does_not_import_scikit_learn() -> None:
    import subprocess
    import sys

    code = "import sys, detector.score, detector.score.io; print('sklearn' in sys.modules, 'skops' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
