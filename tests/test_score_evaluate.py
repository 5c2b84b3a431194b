"""Evaluation figures and training helpers on tiny arrays and frames."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from score_frames import detection, event, frame, stub_model

from detector.config import Config
from detector.score import score
from detector.score.evaluate import account_metrics, binary_metrics, detection_rate_at_fpr, trap_accounts
from detector.score.train import subsample


def test_detection_rate_at_fpr() -> None:
    y = np.array([0] * 1000 + [1] * 10)
    p = np.concatenate([np.linspace(0, 0.5, 1000), np.linspace(0.45, 1.0, 10)])
    # 1% FPR allows the 10 highest benign scores (>= 0.495): every positive above them is found.
    assert detection_rate_at_fpr(y, p, 0.01) == pytest.approx(0.9)
    assert detection_rate_at_fpr(y, p, 0.0) == pytest.approx(0.9)
    assert detection_rate_at_fpr(np.zeros(3), np.zeros(3), 0.01) is None


def test_binary_metrics_at_half() -> None:
    m = binary_metrics(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1, 0.0]))
    assert (m["precision"], m["recall"], m["positives"], m["n"]) == (0.5, 0.5, 2, 5)


def test_subsample_keeps_every_positive_and_reweights_negatives() -> None:
    y = np.array([1] * 5 + [0] * 100)
    idx, w = subsample(y, 20, np.random.default_rng(0))
    assert (y[idx] == 1).sum() == 5 and (y[idx] == 0).sum() == 20
    assert w[y[idx] == 0].sum() == pytest.approx(100)
    idx, w = subsample(y, 1000, np.random.default_rng(0))
    assert len(idx) == 105 and (w == 1).all()


@pytest.mark.parametrize(
    ("max_benign", "max_attack", "kept"), [(20, 30, (30, 20)), (1000, 30, (30, 100)), (20, 1000, (50, 20))]
)
def test_subsample_caps_each_class_and_keeps_its_weight(
    max_benign: int, max_attack: int, kept: tuple
) -> None:
    y = np.array([1] * 50 + [0] * 100)
    idx, w = subsample(y, max_benign, np.random.default_rng(0), max_attack)
    assert ((y[idx] == 1).sum(), (y[idx] == 0).sum()) == kept
    assert w[y[idx] == 1].sum() == pytest.approx(50) and w[y[idx] == 0].sum() == pytest.approx(100)
    assert len(set(idx.tolist())) == len(idx)


def _labelled(rows: list[dict], attack: list[bool]) -> pl.DataFrame:
    return frame(rows).with_columns(pl.Series("is_attack", attack))


def test_trap_populations_are_recognised_from_benign_events() -> None:
    rows = [event("stale", "203.0.113.5", "failure", minute=i) for i in range(20)]
    rows += [
        event("typo", "203.0.113.6", "failure", minute=1),
        event("typo", "203.0.113.6", "success", minute=2),
    ]
    rows += [
        event("slow", "203.0.113.7", "failure", minute=1),
        event("slow", "203.0.113.7", "success", minute=30),
    ]
    rows += [event("trav", "203.0.113.8", "success", minute=m) for m in range(3)]
    rows += [event("trav", "192.0.2.8", "success", minute=9, country="ES")]
    rows += [event("victim", "198.51.100.1", "failure", minute=i) for i in range(25)]
    attack = [False] * (len(rows) - 25) + [True] * 25
    traps = trap_accounts(_labelled(rows, attack), compromised=set())
    assert traps["stale_password"] == ["stale"]
    assert traps["typo"] == ["typo"]
    assert traps["traveller"] == ["trav"]


def test_compromised_accounts_are_not_traps() -> None:
    rows = [event("x", "203.0.113.6", "failure", minute=1), event("x", "203.0.113.6", "success", minute=2)]
    assert trap_accounts(_labelled(rows, [False, False]), compromised={"x"})["typo"] == []


def test_shared_address_traps_come_from_the_address_plan(tmp_path) -> None:
    plan = tmp_path / "address-plan.csv"
    plan.write_text("cidr,kind\n37.160.0.0/16,mobile\n195.221.0.0/28,hospital\n81.56.0.0/29,clinic\n")
    rows = [
        event("phone", "37.160.3.4", "success"),
        event("nurse", "81.56.0.2", "success"),
        event("home", "203.0.113.9", "success"),
    ]
    traps = trap_accounts(_labelled(rows, [False] * 3), set(), plan)
    assert (traps["cgnat"], traps["hospital_nat"]) == (["phone"], ["nurse"])


def test_account_metrics_count_false_compromised_per_10k() -> None:
    from score_frames import attack_world

    s = score(detection(attack_world()), stub_model(), Config())
    m = account_metrics(s, {"victim"}, {"typo": ["typo"]})
    assert (m["compromised"], m["found"], m["compromised_recall"], m["false_compromised"]) == (1, 1, 1.0, 0)
    assert m["traps"]["typo"]["judged_compromised"] == 0
    m = account_metrics(s, {"u0"}, {"typo": ["victim"]})
    assert m["false_compromised"] == 1 and m["false_compromised_per_10k"] == pytest.approx(10_000 / 9)
    assert m["traps"]["typo"]["judged_compromised"] == 1


@pytest.mark.parametrize(
    ("rows", "compromised", "expected"),
    [
        ("Ann@x,typo,2,1\nbob@x,typo,1,1\n", set(), {"typo": ["ann@x", "bob@x"]}),
        ("ann@x,typo,2,1\nann@x,desktop_home,9,1\n", set(), {"typo": ["ann@x"]}),
        ("ann@x,phone_cgnat,2,1\nbob@x,hospital_nat,1,1\n", {"bob@x"}, {"phone_cgnat": ["ann@x"]}),
        ("ann@x,webmail,2,1\n", set(), {}),
    ],
)
def test_trap_populations_come_from_the_behaviours_file(tmp_path, rows, compromised, expected) -> None:
    from detector.score.evaluate import behaviour_traps

    f = tmp_path / "legit-behaviours.csv"
    f.write_text("account,behaviour,sessions,sources\n" + rows)
    assert behaviour_traps(f, compromised) == expected


def test_a_behaviours_file_without_its_columns_is_a_clear_error(tmp_path) -> None:
    from detector.errors import InputError
    from detector.score.evaluate import behaviour_traps

    f = tmp_path / "legit-behaviours.csv"
    f.write_text("who,what\nann,typo\n")
    with pytest.raises(InputError) as e:
        behaviour_traps(f, set())
    assert e.value.path is not None and "legit-behaviours.csv" in str(e.value.path)


def test_the_samples_behaviours_file_names_every_trap_population() -> None:
    from pathlib import Path

    from detector.score.evaluate import behaviour_traps

    traps = behaviour_traps(Path(__file__).parents[1] / "data/samples/labels/legit-behaviours.csv", set())
    assert {"phone_cgnat", "hospital_nat", "vpn_user", "typo", "moved", "stale_password"} <= set(traps)
    assert "desktop_home" not in traps
