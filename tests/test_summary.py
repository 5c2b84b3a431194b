"""The terminal summary and summary.json: counts that match what is listed, whole lines when piped."""

import io
import json
import shlex

import polars as pl
import pytest
from rich.console import Console

from detector.report.summary import (
    build_summary,
    collateral_split,
    graded_warnings,
    next_steps,
    print_summary,
    top_by_impact,
)
from detector.schema import C
from detector.terminal import safe_line
from tests.report_fixtures import run_data


def _text(summary, *, terminal: bool, width: int = 80) -> str:
    out = io.StringIO()
    print_summary(summary, Console(file=out, width=width, force_terminal=terminal, color_system=None))
    return out.getvalue()


def test_every_count_matches_what_is_listed_or_says_how_many_more():
    text = _text(build_summary(run_data(n_compromised=12, n_targeted=30)), terminal=False)
    assert "Campaigns: 6" in text and "and 3 more (campaigns.parquet)" in text
    assert "Compromised accounts: 12" in text and "and 7 more (accounts.parquet)" in text
    assert "Targeted accounts: 30" in text and "and 28 more (accounts.parquet)" in text
    assert "and 1 more (summary.json)" in text


@pytest.mark.parametrize("width", [60, 80, 120])
def test_no_ellipsis_when_piped(width):
    s = build_summary(run_data())
    s["accounts"]["compromised"][0]["reasons"] = ["x" * 300]
    text = _text(s, terminal=False, width=width)
    assert "…" not in text and "x" * 300 in text


def test_a_terminal_cuts_long_lines_to_its_width():
    s = build_summary(run_data())
    s["accounts"]["compromised"][0]["reasons"] = ["x" * 300]
    text = _text(s, terminal=True, width=80)
    assert "…" in text and max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize(
    ("hours", "label"), [(23, "Night: 130 lines"), (36, "Night:"), (71, "Window (3 days):")]
)
def test_a_window_longer_than_a_night_is_not_called_a_night(hours, label):
    from datetime import timedelta

    from tests.report_fixtures import T0

    data = run_data()
    meta = {**data.meta, "window_end": (T0 + timedelta(hours=hours)).isoformat()}
    assert label in _text(build_summary(type(data)(**{**data.__dict__, "meta": meta})), terminal=False)


def _plan(rows):
    base = {
        "target_type": "account",
        C.RISK_SCORE: 0.5,
        "reason": "r",
        "collateral_accounts": 0,
        "collateral_practitioners": 0,
        "evidence": "{}",
    }
    return pl.DataFrame([{**base, **r} for r in rows], infer_schema_length=None)


ACCOUNTS = pl.DataFrame({C.ACCOUNT: ["a", "b", "c"], C.IS_PRACTITIONER: [True, False, True]})


def test_collateral_is_split_by_who_bears_it_and_monitors_count_nowhere():
    plan = _plan(
        [
            {"measure_id": "M1", "action": "reset_credentials", "target": "a", "collateral_accounts": 1},
            {"measure_id": "M2", "action": "restrict_account", "target": "b"},
            {"measure_id": "M3", "action": "restrict_account", "target": "c"},
            {"measure_id": "M4", "action": "block", "target_type": "ip", "target": "192.0.2.1",
             "collateral_accounts": 4, "collateral_practitioners": 1},
            {"measure_id": "M5", "action": "monitor", "target_type": "ip", "target": "192.0.2.2",
             "collateral_accounts": 900, "collateral_practitioners": 300},
        ]
    )  # fmt: skip
    assert collateral_split(plan, ACCOUNTS) == {
        "reset_owners": {"accounts": 1, "practitioners": 1},
        "refused_by_blocks": {"accounts": 4, "practitioners": 1},
        "held_by_restrictions": {"accounts": 2, "practitioners": 1},
    }


def test_top_measures_rank_by_impact_and_include_every_kind():
    blocks = [
        {"measure_id": f"B{i:02}", "action": "block", "target_type": "ip", "target": f"192.0.2.{i}",
         "evidence": json.dumps({"attempts": 100 + i, "accounts": 3})}
        for i in range(20)
    ]  # fmt: skip
    others = [
        {"measure_id": "R1", "action": "reset_credentials", "target": "a",
         "evidence": json.dumps({"attack_attempts": 4})},
        {"measure_id": "A1", "action": "block", "target_type": "asn", "target": "AS64500",
         "evidence": json.dumps({"attempts": 7, "accounts": 40})},
        {"measure_id": "W1", "action": "monitor", "target": "b", "evidence": json.dumps({"attack_attempts": 999})},
    ]  # fmt: skip
    top = top_by_impact(_plan(blocks + others), limit=10)
    ids = top["measure_id"].to_list()
    assert len(ids) == 10 and {"R1", "A1"} <= set(ids) and "W1" not in ids
    assert ids[:3] == ["R1", "B19", "A1"] and top["attacks_stopped"][1] == 119  # resets first, then by impact
    rest = top.filter(pl.col("target_type") == "ip")["attacks_stopped"].to_list()
    assert rest == sorted(rest, reverse=True)


def test_warnings_are_graded_the_degrading_ones_first():
    graded = graded_warnings(["1 line(s) with invalid UTF-8 quarantined", "no history yet (a first night)"])
    assert [g["severity"] for g in graded] == ["high", "low"]
    text = _text(build_summary(run_data()), terminal=False)
    assert "warning (high): no GeoIP databases found" in text


@pytest.mark.parametrize("account", ["x; rm -rf ~", "$(reboot)@example.org", "a'b@example.org"])
def test_next_steps_quote_account_names_from_the_logs(account):
    steps = next_steps([{C.ACCOUNT: account}], [], pl.DataFrame({"action": ["block"], "target_type": ["ip"]}))
    words = shlex.split(steps[0]["command"])
    assert words[:3] == ["detector", "explain", account]
    assert [s["command"].split()[1] for s in steps] == ["explain", "export"]


@pytest.mark.parametrize(
    ("raw", "shown"), [("a\x1b[31mb", "a\\x1b[31mb"), ("a\nb", "a\\nb"), ("\u202eevil", "\\u202eevil")]
)
def test_log_values_cannot_drive_the_terminal(raw, shown):
    assert safe_line(raw) == shown


def test_summary_json_has_the_split_the_ranking_and_the_next_steps():
    s = build_summary(run_data())
    json.dumps(s)
    assert s["plan"]["collateral"]["reset_owners"]["accounts"] == 1
    assert s["plan"]["top"][0]["action"] in {"block", "reset_credentials"}
    assert s["replay"]["kind"] == "same_day"
    assert s["next_steps"][0]["command"].startswith("detector explain ")


def test_users_behind_two_blocks_count_once_when_the_collateral_report_names_them():
    plan = _plan(
        [
            {"measure_id": "B1", "action": "block", "target_type": "ip", "target": "192.0.2.1", "collateral_accounts": 2},
            {"measure_id": "B2", "action": "block", "target_type": "cidr", "target": "192.0.2.0/24",
             "collateral_accounts": 2},
        ]
    )  # fmt: skip
    collateral = pl.DataFrame(
        {
            "measure_id": ["B1", "B1", "B2", "B2"],
            "action": ["block"] * 4,
            C.ACCOUNT: ["a", "b", "a", "b"],
            C.IS_PRACTITIONER: [True, False, True, False],
        }
    )
    assert collateral_split(plan, ACCOUNTS)["refused_by_blocks"] == {"accounts": 4, "practitioners": 0}
    assert collateral_split(plan, ACCOUNTS, collateral)["refused_by_blocks"] == {
        "accounts": 2,
        "practitioners": 1,
    }
