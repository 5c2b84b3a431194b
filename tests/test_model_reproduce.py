"""``make model``'s worlds: development seeds only, and worlds kept apart in one training frame."""

from __future__ import annotations

import tomllib
from pathlib import Path

import polars as pl
import pytest

from detector.score import reproduce

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_no_training_or_held_out_world_is_a_recorded_fresh_or_tuned_world() -> None:
    recorded = {
        int(w["seed"])
        for path in BENCH.glob("*worlds*.toml")
        for w in tomllib.loads(path.read_text()).get("world", [])
    }
    assert recorded, "no recorded world found"
    ours = {seed for _, seed in reproduce.TRAIN_WORLDS + reproduce.EVAL_WORLDS}
    assert not ours & recorded
    assert not ours & {7}  # data/samples
    assert not {s for _, s in reproduce.TRAIN_WORLDS} & {s for _, s in reproduce.EVAL_WORLDS}
    assert {m for m, _ in reproduce.TRAIN_WORLDS + reproduce.EVAL_WORLDS} == {"fixed", "drawn"}


def test_tagged_worlds_keep_their_labels_and_their_own_accounts() -> None:
    from detector.labels import label_events

    ts = pl.datetime(2026, 11, 17, 3, time_zone="UTC")
    events = pl.DataFrame({"account": ["a@x", "b@x"], "source_ip": ["192.0.2.1", "192.0.2.2"]}).with_columns(
        timestamp=ts
    )
    labels = pl.DataFrame(
        {
            "campaign": ["c1"],
            "technique": ["credential_stuffing"],
            "source_ip": ["192.0.2.1"],
            "account": [None],
            "start": [None],
            "end": [None],
            "compromised": [False],
        },
        schema_overrides={
            "account": pl.String,
            "start": pl.Datetime("us", "UTC"),
            "end": pl.Datetime("us", "UTC"),
        },
    )
    e0, l0 = reproduce.tag_world(events, labels, 0)
    e1, _ = reproduce.tag_world(events, labels, 1)
    frame = pl.concat([e0, e1])
    assert frame.get_column("account").n_unique() == 4
    got = label_events(frame.lazy(), l0).collect().get_column("is_attack").fill_null(False).to_list()
    assert got == [True, False, False, False]


@pytest.mark.parametrize(
    ("text", "worlds"),
    [("fixed:101", (("fixed", 101),)), ("fixed:1, drawn:9001", (("fixed", 1), ("drawn", 9001)))],
)
def test_world_lists_parse(text: str, worlds: tuple) -> None:
    assert reproduce._worlds(text) == worlds


@pytest.mark.parametrize("text", ["101", "random:5", "drawn:x", "drawn:-1"])
def test_bad_world_lists_are_refused(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        reproduce._worlds(text)
