"""``detector explain`` on a tiny run directory with plain and gzipped logs."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import polars as pl
import pytest
from rich.console import Console
from score_frames import attack_world, detection, stub_model
from typer.testing import CliRunner

from detector.cli import app
from detector.config import Config
from detector.detect.findings import FINDING_SCHEMA
from detector.errors import InputError
from detector.schema import C
from detector.score import score
from detector.score.explain import explain, read_lines, render

T = datetime(2026, 3, 1, 8, tzinfo=UTC)


@pytest.fixture
def run_dir(tmp_path):
    rows = attack_world()
    for r in rows:
        r[C.SOURCE_FILE] = str(
            tmp_path / ("logs/mail.log.gz" if r[C.ACCOUNT] == "victim" else "logs/mail.log")
        )
    logs = tmp_path / "logs"
    logs.mkdir()
    text = "\n".join(f"line {i} of mail.log" for i in range(1, 50)) + "\n"
    (logs / "mail.log").write_text(text)
    with gzip.open(logs / "mail.log.gz", "wt") as f:
        f.write(text.replace("mail.log", "mail.log.gz"))
    s = score(detection(rows), stub_model(), Config())
    out = tmp_path / "run"
    out.mkdir()
    s.accounts.write_parquet(out / "accounts.parquet")
    s.sources.write_parquet(out / "sources.parquet")
    s.events.write_parquet(out / "events.parquet")
    victim_ids = s.events.filter(pl.col(C.ACCOUNT) == "victim")[C.EVENT_ID].to_list()
    findings = pl.DataFrame(
        [
            ("F1", "suspicious_success", "T1078", "high", "attack", "account", "victim", T, T, "cs-1", 0.9,
             '{"failures": 3}', victim_ids),
            ("F2", "credential_stuffing", "T1110.004", "high", "attack", "campaign", "cs-1", T, T, "cs-1", 0.8,
             '{"accounts": 7}', []),
            ("F3", "brute_force", "T1110.001", "medium", "attack", "account", "quiet", T, T, None, 0.4, "{}", []),
        ],
        schema=FINDING_SCHEMA,
        orient="row",
    )  # fmt: skip
    findings.write_parquet(out / "findings.parquet")
    return out


def test_account_explanation_reads_back_gzipped_lines(run_dir) -> None:
    ex = explain("Victim", run_dir)
    assert ex.kind == "account" and ex.verdict["verdict"] == "compromised"
    assert ex.findings["finding_id"].to_list() == ["F1"]
    assert [(ln.line_number, ln.text) for ln in ex.lines] == [
        (20, "line 20 of mail.log.gz"),
        (21, "line 21 of mail.log.gz"),
    ]
    assert ex.lines[0].source_file.endswith("mail.log.gz")


def test_source_explanation_takes_campaign_findings(run_dir) -> None:
    ex = explain("198.51.100.7", run_dir, max_lines=3)
    assert ex.kind == "source" and ex.verdict["verdict"] == "malicious"
    assert set(ex.findings["finding_id"]) == {"F1", "F2"}
    assert len(ex.lines) == 3 and ex.events_total == 8
    assert all(ln.text and ln.text.startswith("line ") for ln in ex.lines)


def test_rendering_shows_reasons_findings_and_lines(run_dir) -> None:
    console = Console(record=True, width=200)
    render(explain("victim", run_dir), console)
    out = console.export_text()
    assert "compromised" in out and "after 3 failed attempts from campaign cs-1" in out
    assert "suspicious_success" in out
    assert "mail.log.gz:21" in out and "line 21 of mail.log.gz" in out


def test_unknown_target_is_an_input_error_with_a_hint(run_dir) -> None:
    with pytest.raises(InputError, match="not in this run") as e:
        explain("victin", run_dir)
    assert e.value.hint == "did you mean victim?"


def test_missing_report_is_an_input_error(run_dir) -> None:
    (run_dir / "findings.parquet").unlink()
    with pytest.raises(InputError, match=r"lacks findings\.parquet"):
        explain("victim", run_dir)


def test_missing_log_file_shows_file_and_line_only(run_dir, tmp_path) -> None:
    (tmp_path / "logs" / "mail.log").unlink()
    ex = explain("quiet", run_dir)
    assert [(ln.line_number, ln.text) for ln in ex.lines] == [(40, None)]
    assert ex.warnings


def test_read_lines_stops_at_the_last_line_wanted(tmp_path) -> None:
    p = tmp_path / "a.log"
    p.write_text("a\nb\nc\n")
    assert read_lines(str(p), [3, 1], tmp_path) == {1: "a", 3: "c"}
    assert read_lines(str(p), [9], tmp_path) == {}


def test_cli_explain(run_dir) -> None:
    result = CliRunner().invoke(app, ["explain", "victim", "--run", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "compromised" in result.output
    bad = CliRunner().invoke(app, ["explain", "nobody", "--run", str(run_dir)])
    assert bad.exit_code == 2


def test_rendering_a_source_shows_its_reasons(run_dir) -> None:
    console = Console(record=True, width=200)
    ex = explain("198.51.100.7", run_dir)
    render(ex, console)
    reasons, text = ex.verdict["reasons"], console.export_text()
    assert reasons and all(f"• {r}" in text for r in reasons)


def test_explain_leads_with_the_takeover_login_even_with_few_lines(run_dir) -> None:
    ex = explain("victim", run_dir, max_lines=1)
    whys = [ln.why for ln in ex.lines]
    assert whys[0] and None not in whys[: sum(w is not None for w in whys)], "evidence first"
    (login,) = [ln for ln in ex.lines if (ln.why or "").startswith("first successful login")]
    assert login.why == "first successful login from 198.51.100.7 after 3 failed attempt(s)"
    assert (login.line_number, login.text) == (21, "line 21 of mail.log.gz")


def test_source_explanation_leads_with_its_first_failure_and_break_in(run_dir) -> None:
    ex = explain("198.51.100.7", run_dir, max_lines=3)
    whys = [ln.why for ln in ex.lines if ln.why]
    assert "first failed attempt" in whys
    assert any(w.startswith("first successful login into victim after") for w in whys)


@pytest.mark.parametrize(
    ("evidence", "shown"),
    [
        ('{"failures": 3, "sources": 2}', "failures=3, sources=2"),
        ('{"ids": [1, 2, 3, 4, 5, 6, 7]}', "ids=[1, 2, 3, 4, 5, ...] (7)"),
        ('{"share": 0.123456}', "share=0.123"),
        ("not json", "not json"),
        (None, ""),
    ],
)
def test_finding_evidence_is_readable(evidence, shown) -> None:
    from detector.score.explain import readable_evidence

    assert readable_evidence(evidence) == shown


def test_rendering_puts_the_evidence_before_the_other_lines(run_dir) -> None:
    console = Console(record=True, width=100)
    render(explain("victim", run_dir), console)
    out = console.export_text()
    assert out.index("evidence (") < out.index("first successful login") < out.index("other log lines")
    assert "failures=3" in out


def test_rendering_escapes_control_characters_of_log_lines(run_dir, tmp_path) -> None:
    (tmp_path / "logs" / "mail.log").write_text("\n".join(f"x\x1b[2J{i}" for i in range(1, 50)) + "\n")
    console = Console(record=True, width=200)
    render(explain("quiet", run_dir), console)
    out = console.export_text()
    assert "\x1b" not in out and "x\\x1b[2J40" in out
