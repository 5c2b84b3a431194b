"""Operators' overrides: lift or extend one measure, with who and why; runs and exports honour them."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from detector.cli import main
from detector.errors import InputError
from detector.recommend.overrides import Override, add_override, apply_overrides, read_overrides
from tests.run_fixtures import write_night, write_practitioners

NOW = datetime(2026, 12, 7, 16, tzinfo=UTC)
PLAN = pl.DataFrame(
    {
        "measure_id": ["M1", "M2", "M3"],
        "action": ["block", "restrict_account", "block"],
        "target": ["192.0.2.1", "ann@example.org", "192.0.2.3"],
        "expires_at": [NOW + timedelta(hours=24)] * 3,
    }
)


def o(measure, action="lift", until=None, at=NOW - timedelta(hours=1), by="alice", why="ticket 1"):
    return Override(measure, action, by, why, at, until)


def test_lift_removes_and_extend_moves_the_expiry():
    later = NOW + timedelta(days=5)
    plan, audit = apply_overrides(PLAN, [o("M1"), o("M2", "extend", later), o("M9")], NOW)
    assert plan["measure_id"].to_list() == ["M2", "M3"]
    assert plan.filter(pl.col("measure_id") == "M2")["expires_at"][0] == later
    assert dict(zip(audit["measure_id"], audit["matched"], strict=True)) == {
        "M1": True,
        "M2": True,
        "M9": False,
    }
    assert (
        set(audit["by"]) == {"alice"}
        and audit.filter(pl.col("measure_id") == "M1")["target"][0] == "192.0.2.1"
    )


def test_an_expired_override_no_longer_holds_and_the_latest_wins():
    plan, audit = apply_overrides(PLAN, [o("M1", until=NOW - timedelta(minutes=1))], NOW)
    assert plan.height == 3 and audit.is_empty()
    later = NOW + timedelta(days=1)
    plan, _ = apply_overrides(PLAN, [o("M1", at=NOW - timedelta(hours=2)), o("M1", "extend", later)], NOW)
    assert "M1" in plan["measure_id"].to_list()


def test_file_round_trip(tmp_path):
    path = tmp_path / "overrides.toml"
    add_override(path, o("M1"))
    add_override(path, o("M2", "extend", NOW + timedelta(days=2), why='quote " and\nnewline'))
    got = read_overrides(path)
    assert [(x.measure, x.action) for x in got] == [("M1", "lift"), ("M2", "extend")]
    assert got[1].why == 'quote " and\nnewline' and got[1].until == NOW + timedelta(days=2)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[override]]\nmeasure = "M1"\naction = "lift"\nby = "a"\n', "`why`"),
        ('[[override]]\nmeasure = "M1"\naction = "drop"\nby = "a"\nwhy = "w"\n', "lift or extend"),
        ('[[override]]\nmeasure = "M1"\naction = "extend"\nby = "a"\nwhy = "w"\n', "needs `until`"),
        ('[[override]]\nmeasure = "M1"\naction = "lift"\nby = "a"\nwhy = "w"\nwho = 1\n', "unknown key"),
        ("[[override]\n", "cannot read"),
    ],
)
def test_bad_overrides_point_at_the_file(tmp_path, text, words):
    path = tmp_path / "o.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=words) as e:
        read_overrides(path)
    assert str(path) in str(e.value)


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_an_override_is_honoured_by_the_next_run_and_the_exports(tmp_path):
    logs = write_night(tmp_path / "logs").parent
    practitioners = write_practitioners(tmp_path / "p.csv")
    overrides = tmp_path / "overrides.toml"
    first = tmp_path / "out1"
    assert (
        _cli("run", logs, "--out", first, "--practitioners", practitioners, "--overrides", overrides)[0] == 2
    )
    assert _cli("run", logs, "--out", first, "--practitioners", practitioners)[0] == 0
    plan = pl.read_parquet(first / "recommendations.parquet")
    block = plan.filter(pl.col("action") == "block")["measure_id"][0]

    code, _, err = _cli("override", "lift", block, "--why", "clinic NAT, ticket 4711", "--by", "alice",
                        "--file", overrides)  # fmt: skip
    assert code == 0 and "recorded" in err
    # the export of tonight's plan honours it at once
    code, out, _ = _cli("export", "--plan", first / "recommendations.parquet", "--format", "json",
                        "--overrides", overrides)  # fmt: skip
    assert code == 0 and block not in out
    code, out, _ = _cli("export", "--plan", first / "recommendations.parquet", "--format", "json")
    assert block in out
    # the next run leaves the measure out and audits the override
    second = tmp_path / "out2"
    code, out, _ = _cli(
        "run", logs, "--out", second, "--practitioners", practitioners, "--overrides", overrides
    )
    assert code == 0
    assert block not in pl.read_parquet(second / "recommendations.parquet")["measure_id"].to_list()
    (audit,) = json.loads((second / "summary.json").read_text())["overrides"]
    assert audit | {"at": None} == audit | {
        "measure_id": block, "override": "lift", "by": "alice", "why": "clinic NAT, ticket 4711",
        "matched": True, "action": "block", "at": None,
    }  # fmt: skip
    assert "overrides in force: 1 (1 lifted" in out and "by alice: clinic NAT, ticket 4711" in out
    code, out, _ = _cli("override", "list", "--file", overrides, "--json")
    assert code == 0 and json.loads(out)[0]["measure"] == block
