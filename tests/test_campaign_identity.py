"""Campaign identities across nights: the documented rule, and two nights run with a state."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from detector.cli import main
from detector.detect.campaigns import CampaignKeys, relink, with_history
from detector.schema import C

T = datetime(2026, 3, 1, tzinfo=UTC)


def keys(**tables: list[tuple[str, str]]) -> CampaignKeys:
    def frame(rows):
        return pl.DataFrame(rows, schema={C.SOURCE_IP: pl.String, C.CAMPAIGN: pl.String}, orient="row")

    return CampaignKeys(
        spraying=frame(tables.get("spraying", [])),
        stuffing=frame(tables.get("stuffing", [])),
        distributed=pl.DataFrame(schema={C.EVENT_ID: pl.UInt64, C.CAMPAIGN: pl.String}),
    )


KNOWN = pl.DataFrame(
    {
        C.CAMPAIGN: ["cs-old", "ps-old"],
        "sources": [["192.0.2.1", "192.0.2.2"], ["198.51.100.9"]],
        "prefixes": [["192.0.2.0/24", "203.0.113.0/24"], ["198.51.100.0/24"]],
    }
)
PREFIXES = pl.DataFrame(
    {
        C.SOURCE_IP: ["192.0.2.1", "192.0.2.77", "203.0.113.5", "198.51.100.9", "10.9.9.9"],
        C.PREFIX: ["192.0.2.0/24", "192.0.2.0/24", "203.0.113.0/24", "198.51.100.0/24", "10.9.9.0/24"],
    }
)


@pytest.mark.parametrize(
    ("tonight", "kept"),
    [
        ([("192.0.2.1", "cs-new")], "cs-old"),  # a shared address
        ([("192.0.2.77", "cs-new"), ("203.0.113.5", "cs-new")], "cs-old"),  # two shared prefixes
        ([("192.0.2.77", "cs-new")], "cs-new"),  # one shared prefix is not enough
        ([("10.9.9.9", "cs-new")], "cs-new"),  # nothing shared
    ],
)
def test_a_campaign_sharing_infrastructure_keeps_its_earlier_id(tonight, kept):
    got = relink(keys(stuffing=tonight), KNOWN, PREFIXES).stuffing
    assert set(got[C.CAMPAIGN]) == {kept}


def test_only_a_campaign_of_the_same_kind_is_continued():
    got = relink(keys(spraying=[("192.0.2.1", "ps-new")]), KNOWN, PREFIXES).spraying
    assert got[C.CAMPAIGN].to_list() == ["ps-new"]
    got = relink(keys(spraying=[("198.51.100.9", "ps-new")]), KNOWN, PREFIXES).spraying
    assert got[C.CAMPAIGN].to_list() == ["ps-old"]


def test_without_a_state_ids_are_tonights():
    k = keys(stuffing=[("192.0.2.1", "cs-new")])
    assert relink(k, None, PREFIXES) is k


def test_history_columns():
    tonight = pl.DataFrame(
        {C.CAMPAIGN: ["cs-old", "cs-new"], "start": [T, T], "end": [T + timedelta(hours=1)] * 2}
    )
    known = pl.DataFrame({C.CAMPAIGN: ["cs-old"], "start": [T - timedelta(days=3)], "nights": [2]})
    out = with_history(tonight, known)
    assert out["first_seen"].to_list() == [T - timedelta(days=3), T]
    assert out["nights"].to_list() == [3, 1]
    assert out["last_seen"].to_list() == [T + timedelta(hours=1)] * 2


@pytest.mark.slow
def test_campaign_ids_are_stable_across_two_nights(tmp_path):
    samples = Path(__file__).resolve().parents[1] / "data" / "samples"
    logs1, logs2 = samples / "logs" / "2026-11-16", samples / "logs" / "2026-11-17"
    practitioners = samples / "practitioners.csv"
    state = tmp_path / "state"
    outs = []
    for i, logs in enumerate((logs1, logs2)):
        out = tmp_path / f"out{i}"
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            code = main(
                [
                    "run",
                    str(logs),
                    "--out",
                    str(out),
                    "--state",
                    str(state),
                    "--practitioners",
                    str(practitioners),
                ]
            )
        assert code == 0
        outs.append((out, stdout.getvalue()))
    first = pl.read_parquet(outs[0][0] / "campaigns.parquet")
    second = pl.read_parquet(outs[1][0] / "campaigns.parquet")
    continued = second.filter(pl.col("nights") == 2)
    assert first.height >= 2 and continued.height >= 2, (first, second)
    assert set(continued[C.CAMPAIGN]) <= set(first[C.CAMPAIGN])
    starts = dict(zip(first[C.CAMPAIGN], first["start"], strict=True))
    assert all(f == starts[c] for c, f in zip(continued[C.CAMPAIGN], continued["first_seen"], strict=True))
    # the events name the same ids
    events = pl.read_parquet(outs[1][0] / "events.parquet", columns=[C.CAMPAIGN])
    assert set(continued[C.CAMPAIGN]) <= set(events[C.CAMPAIGN].drop_nulls())
    summary = json.loads((outs[1][0] / "summary.json").read_text())
    assert summary["replay"]["kind"] == "next_day" and summary["since_last_night"] is not None
    assert "Next-day estimate" in outs[1][1] and "since last night:" in outs[1][1]
    assert json.loads((outs[0][0] / "summary.json").read_text())["replay"]["kind"] == "same_day"


def test_guessing_campaigns_survive_the_relinking():
    """A night run with a state keeps its ``gs-`` campaigns (they were dropped once)."""
    k = keys(stuffing=[("192.0.2.1", "cs-new")])
    guessing = pl.DataFrame({C.SOURCE_IP: ["10.9.9.9"], C.CAMPAIGN: ["gs-new"]})
    k = CampaignKeys(k.spraying, k.stuffing, k.distributed, guessing=guessing)
    got = relink(k, KNOWN, PREFIXES).guessing
    assert got is not None and got.equals(guessing)
