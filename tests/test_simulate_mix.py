"""The attack mix drawn per world: reproducible per seed, different across seeds, within its ranges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from detector.cli import app
from detector.errors import InputError
from detector.simulate import DEFAULT_START, build_world, simulate
from detector.simulate.mix import FIXED, TAKEOVER_INFRA, AttackMix, resolve
from detector.simulate.sessions import day_start

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=200, deadline=None)
@given(SEEDS)
def test_drawn_mix_stays_in_its_documented_ranges(seed: int) -> None:
    m = AttackMix.draw(seed)
    assert m.drawn
    assert 0.5 <= m.scale <= 3.0
    assert 0.04 <= m.stuffing_list <= 0.20
    assert 0.01 <= m.stuffing_valid <= 0.08
    assert 0.5 <= m.practitioner_bias <= 4.0
    assert m.proxy_domestic + m.proxy_mobile + m.proxy_shared <= 1.0
    assert min(m.proxy_domestic, m.proxy_mobile, m.proxy_shared, m.proxy_same_city) >= 0.0
    assert 0.0 <= m.proxy_keep <= 0.7
    assert 1 <= m.bursts <= 6
    assert 0.0 <= m.low_and_slow <= 0.7
    assert 1 <= m.takeover_logins[0] < m.takeover_logins[1]
    assert m.takeover_infra is not None and len(m.takeover_infra) == len(TAKEOVER_INFRA)
    assert sum(m.takeover_infra) == pytest.approx(1.0, abs=1e-3)


@settings(deadline=None)
@given(SEEDS)
def test_a_seed_draws_the_same_mix_every_time(seed: int) -> None:
    assert AttackMix.draw(seed) == AttackMix.draw(seed)


def test_seeds_draw_different_mixes() -> None:
    mixes = [AttackMix.draw(s) for s in range(20)]
    assert len({m.scale for m in mixes}) == 20
    assert len({m.bursts for m in mixes}) > 2


@pytest.mark.parametrize(
    ("given_", "expected"), [("fixed", FIXED), (FIXED, FIXED), ("drawn", AttackMix.draw(5))]
)
def test_resolve(given_: object, expected: AttackMix) -> None:
    assert resolve(given_, 5) == expected


def test_resolve_refuses_an_unknown_mix() -> None:
    with pytest.raises(InputError, match="--mix"):
        resolve("random", 5)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("days", [1, 2])
def test_drawn_worlds_keep_attacks_inside_the_logged_days(seed: int, days: int) -> None:
    w = build_world(accounts=200, days=days, seed=seed, mix="drawn")
    attack = w.sessions.filter(pl.col("campaign").is_not_null())
    assert attack.height > 0
    assert attack["ts"].min() >= day_start(DEFAULT_START, 0)
    assert attack["ts"].max() < day_start(DEFAULT_START, days)
    assert w.labels.filter(pl.col("compromised")).height > 0


def test_the_drawn_mix_changes_the_attacks_not_who_lives_in_the_world() -> None:
    fixed = build_world(accounts=300, days=2, seed=9)
    drawn = build_world(accounts=300, days=2, seed=9, mix="drawn")
    assert np.array_equal(fixed.population.account, drawn.population.account)
    legit = [w.sessions.filter(pl.col("campaign").is_null()).height for w in (fixed, drawn)]
    attacks = [w.sessions.filter(pl.col("campaign").is_not_null()).height for w in (fixed, drawn)]
    assert legit[0] == pytest.approx(legit[1], rel=0.05)
    assert attacks[0] != attacks[1]


def test_manifest_records_a_drawn_mix_only(tmp_path: Path) -> None:
    simulate(tmp_path / "fixed", accounts=60, days=1, seed=3)
    simulate(tmp_path / "drawn", accounts=60, days=1, seed=3, mix="drawn")
    assert "attack_mix" not in json.loads((tmp_path / "fixed" / "manifest.json").read_text())
    mix = json.loads((tmp_path / "drawn" / "manifest.json").read_text())["attack_mix"]
    assert mix["scale"] == AttackMix.draw(3).scale
    assert set(mix["takeover_infra"]) == set(TAKEOVER_INFRA)


def test_cli_mix_option(tmp_path: Path) -> None:
    ok = CliRunner().invoke(
        app, ["simulate", "--out", str(tmp_path / "w"), "--accounts", "60", "--days", "1"]
    )
    assert ok.exit_code == 0, ok.output
    assert "attack mix drawn from the seed" in ok.output
    bad = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "w"), "--mix", "random"])
    assert bad.exit_code == 2
    assert "--mix" in bad.output
