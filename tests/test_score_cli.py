"""``detector train`` and ``detector evaluate`` end to end on a tiny simulated world."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from detector.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from detector.simulate import simulate

    out = tmp_path_factory.mktemp("world")
    simulate(out, accounts=400, days=1, seed=31)
    return out


def _opts(world):
    return ["--events", str(world / "logs"), "--labels", str(world / "labels" / "incidents.csv"),
            "--geoip-dir", str(world / "geoip"), "--practitioners", str(world / "practitioners.csv")]  # fmt: skip


def test_train_then_evaluate_writes_model_card_and_metrics(world, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "models" / "tiny"
    r = runner.invoke(app, ["train", *_opts(world), "--out", str(out), "--max-iter", "20"])
    assert r.exit_code == 0, r.output
    assert "trained tiny-" in r.output
    assert "detector: info: login model, cross-validation fold 1/3 done" in r.stderr, (
        "progress of a long command"
    )
    assert (tmp_path / "models" / "tiny.skops").exists()
    card = json.loads((tmp_path / "models" / "tiny.card.json").read_text())
    assert card["training"]["attack_events"] > 0 and card["metrics"] == {}

    card_path = tmp_path / "models" / "tiny.card.json"
    before = card_path.read_bytes()
    r = runner.invoke(app, ["evaluate", "--model", str(out) + ".skops", *_opts(world), "--json"])
    assert r.exit_code == 0, r.output
    assert card_path.read_bytes() == before, "evaluate leaves the card alone unless asked"
    assert json.loads(r.stdout)["metrics"]["events"]["pr_auc"] > 0.9

    r = runner.invoke(app, ["evaluate", "--model", str(out) + ".skops", *_opts(world), "--write-card"])
    assert r.exit_code == 0, r.output
    for text in ("PR-AUC", "DR@0.1%FPR", "DR@1%FPR", "per 10k", "trap phone_cgnat", "password_spraying"):
        assert text in r.output
    metrics = json.loads((tmp_path / "models" / "tiny.card.json").read_text())["metrics"]
    assert metrics["events"]["pr_auc"] > 0.9
    assert set(metrics["targets"]) >= {"source_pr_auc>=0.95", "no_trap_compromised"}


def test_evaluate_refuses_a_tampered_model(world, tmp_path) -> None:
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"not a model")
    (tmp_path / "bad.card.json").write_text(json.dumps({"sha256": "0" * 64, "versions": {}}))
    r = CliRunner().invoke(app, ["evaluate", "--model", str(bad), *_opts(world)])
    assert r.exit_code == 2
    assert "checksum" in r.output


def test_train_refuses_labels_of_another_world(world, tmp_path) -> None:
    labels = tmp_path / "incidents.csv"
    labels.write_text("campaign,technique,source_ip,account,start,end,compromised\n")
    opts = _opts(world)
    opts[opts.index("--labels") + 1] = str(labels)
    r = CliRunner().invoke(app, ["train", *opts, "--out", str(tmp_path / "m")])
    assert r.exit_code == 2
    assert "need at least 3 of each class" in r.output
