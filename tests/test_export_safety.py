"""What the exports and the terminal output refuse to pass on: invalid networks, account names a
consumer would misread, spreadsheet formulas, control sequences; and the export command's counts."""

import csv
import io
import json
import logging
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from detector.cli import app
from detector.logging_setup import TextFormatter
from detector.recommend.export import (
    csv_text,
    dovecot_name_problem,
    neutralise_cell,
    render,
    strict_net,
)
from detector.report.summary import build_summary, print_summary
from detector.schema import RECOMMENDATION_SCHEMA
from detector.terminal import safe
from tests.recommend_frames import NOW
from tests.report_fixtures import run_data
from tests.test_export import BASE, PLAN, ROWS, body


def plan_of(*rows):
    return pl.DataFrame([{**BASE, **r} for r in rows], schema=RECOMMENDATION_SCHEMA)


@pytest.mark.parametrize(
    "text",
    ["198.51.100.7", "203.0.113.0/24", "2001:db8:1:2::/64", "2001:db8::1", "AS64666", "0.0.0.0/0"],
)
def test_canonical_networks_are_valid(text):
    assert strict_net(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "9.9.9.8>",
        " 198.51.100.7",
        "198.51.100.7 ",
        "203.0.113.5/24",  # host bits
        "fe80::1%eth0",  # zone id
        "2001:DB8::1",  # not canonical
        "2001:db8:0::1",
        "010.1.1.1",
        "1.2.3.4/33",
        "AS 64666",
        "as64666",
        "AS064666",
        "AS4294967296",
        "",
        None,
        "1.2.3.4\n5.6.7.8",
        "203.0.113.0/24 timeout 1s, 0.0.0.0/0",
    ],
)
def test_anything_else_is_not(text):
    assert strict_net(text) is None


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("alice@example.org", True),
        ("Dr. Émile Zola@example.org", True),
        ("a:::::::allow_nets=0.0.0.0/0 x", False),
        ("a\nb", False),
        ("a\rb", False),
        ("a\x1b[2Jb", False),
        ("a\u2028b", False),
        (" alice@example.org", False),
        ("alice@example.org ", False),
        ("#alice", False),
        ("", False),
    ],
)
def test_dovecot_account_names(name, ok):
    assert (dovecot_name_problem(name) is None) is ok


@given(st.text(alphabet=st.sampled_from(list(":\n\r\t #=, a@.\x00\x1b\u2028/")), min_size=1, max_size=30))
def test_no_account_name_adds_a_passwd_file_line_or_field(name):
    plan = plan_of(
        {"measure_id": "X", "action": "lock_account", "target_type": "account", "target": name},
        {"measure_id": "Y", "action": "reset_credentials", "target_type": "account", "target": name},
    )
    done = render(plan, "dovecot", now=NOW, password_hashes={name: "{PLAIN}x"})
    lines = body(done.files["accounts"]) + body(done.files["reset"])
    if dovecot_name_problem(name) is None:
        assert len(lines) == 6  # five services for the lock, one reset
        assert all(line.split(":", 7)[0].endswith(name) for line in lines)
    else:
        assert lines == [] and len(done.tally.skipped) == 2
    for text in done.files.values():
        assert all(line.startswith("#") or line.count(":") >= 7 or "{" in line or "}" in line or line.strip() == ""
                   or line.strip().startswith(("driver", "args", "result_")) for line in text.splitlines())  # fmt: skip


def test_hostile_blocks_are_skipped_counted_and_named():
    plan = plan_of(
        {"measure_id": "B1", "action": "block", "target_type": "cidr", "target": "0.0.0.0/0"},
        {"measure_id": "B2", "action": "block", "target_type": "ip", "target": "9.9.9.8>"},
        {"measure_id": "B3", "action": "block", "target_type": "ip", "target": "1.2.3.4\n0.0.0.0/0"},
        {"measure_id": "B4", "action": "block", "target_type": "ip", "target": "192.0.2.1"},
    )
    for fmt in ("nftables", "postfix", "dovecot", "crowdsec"):
        done = render(plan, fmt, now=NOW)
        assert len(done.tally.skipped) == 3 and done.tally.written == 1, fmt
        assert "0.0.0.0/0" not in done.text.replace("0.0.0.0/0 (", "") or fmt == "dovecot"
        assert "9.9.9.8>" not in done.text and "\\n" in "".join(done.tally.skipped)
    assert "0.0.0.0/0" not in render(plan, "dovecot", now=NOW).files["block-nets"]


def test_a_block_on_unknown_services_only_is_skipped():
    plan = plan_of(
        {
            "measure_id": "S1",
            "action": "block",
            "target_type": "ip",
            "target": "192.0.2.1",
            "services": ["imap }"],
        },
        {
            "measure_id": "S2",
            "action": "block",
            "target_type": "ip",
            "target": "192.0.2.2",
            "services": ["imap", "x"],
        },
    )
    done = render(plan, "nftables", now=NOW)
    assert (
        done.tally.written == 1 and "imap }" in done.tally.skipped[0] and "set blocked_v4_imap " in done.text
    )


@pytest.mark.parametrize("cell", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_formula_cells_are_neutralised(cell):
    assert neutralise_cell(cell) == "'" + cell
    rows = list(csv.reader(io.StringIO(csv_text(["h"], [[cell]]), newline="")))
    assert rows == [["h"], ["'" + cell]]


@pytest.mark.parametrize("cell", ["alice", "1.5", "203.0.113.0/24", "", "a=b"])
def test_other_cells_are_untouched(cell):
    assert neutralise_cell(cell) == cell


def test_csv_plan_carries_no_formula():
    plan = plan_of(
        {"measure_id": "F1", "action": "lock_account", "target_type": "account", "target": "=cmd|'/c calc'!A1",
         "reason": "@SUM(1)"},
    )  # fmt: skip
    rows = list(csv.reader(io.StringIO(render(plan, "csv", now=NOW).text)))
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r)
    assert rows[1][3] == "'=cmd|'/c calc'!A1"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("a\x9b31mb", "a\\x9b31mb"),
        ("a\rb", "a\\x0db"),
        ("evil\u202egpj.exe", "evil\\u202egpj.exe"),
        ("line\nnext\tcol", "line\nnext\tcol"),
        ("héllo", "héllo"),
    ],
)
def test_terminal_text_shows_control_sequences_as_escapes(text, shown):
    assert safe(text) == shown


def test_summary_on_the_terminal_has_no_escape_sequence():
    s = build_summary(run_data(n_compromised=3))
    s["accounts"]["compromised"][0]["account"] = "victim\x1b]0;pwned\x07\x1b[2J@example.org"
    s["warnings"] = ["name \x1b[8mhidden\x1b[0m"]
    console = Console(width=120, record=True, force_terminal=False)
    print_summary(s, console)
    text = console.export_text()
    assert "\x1b" not in text and "\\x1b]0;pwned" in text


def test_log_lines_and_cli_errors_have_no_escape_sequence(tmp_path):
    record = logging.LogRecord("detector", logging.WARNING, "", 0, "bad name %s", ("a\x1b[2Jb",), None)
    assert "\x1b" not in TextFormatter().format(record)
    result = CliRunner().invoke(
        app, ["export", "--plan", str(tmp_path / "x\x1b[2J.parquet"), "--format", "csv"]
    )
    assert result.exit_code == 2 and "\x1b" not in result.stderr and "\\x1b[2J" in result.stderr


# --- the export command -----------------------------------------------------------------------


def invoke(tmp_path, plan, *args):
    f = tmp_path / "recommendations.parquet"
    plan.write_parquet(f)
    return CliRunner().invoke(app, ["export", "--plan", str(f), *args])


def test_default_now_says_when_everything_has_expired(tmp_path):
    result = invoke(tmp_path, PLAN, "--format", "nftables")  # the plan's night is long past
    assert result.exit_code == 0
    assert "nothing in force" in result.stderr and "all 7 nftables measures had expired" in result.stderr
    assert "0 written, 7 expired" in result.stderr


def test_fail_on_empty_exits_1_and_writes_nothing(tmp_path):
    target = tmp_path / "out.nft"
    result = invoke(tmp_path, PLAN, "--format", "nftables", "--out", str(target), "--fail-on-empty")
    assert result.exit_code == 1 and not target.exists()
    ok = invoke(
        tmp_path, PLAN, "--format", "nftables", "--out", str(target), "--fail-on-empty", "--now", "2026-03-03"
    )
    assert ok.exit_code == 0 and target.exists()


def test_counts_on_stderr(tmp_path):
    result = invoke(tmp_path, PLAN, "--format", "postfix", "--now", "2026-03-03")
    assert "postfix export: 4 written, 1 expired, 0 skipped, 1 left as comments" in result.stderr


def test_skipped_values_are_named_escaped_on_stderr(tmp_path):
    plan = plan_of(*ROWS, {"measure_id": "H", "action": "lock_account", "target_type": "account",
                           "target": "x\x1b[2J:::::::allow_nets=0.0.0.0/0"})  # fmt: skip
    result = invoke(
        tmp_path, plan, "--format", "dovecot", "--out", str(tmp_path / "dv"), "--now", "2026-03-03"
    )
    assert result.exit_code == 0
    assert "skipped (cannot be written safely): x\\x1b[2J:::::::allow_nets=0.0.0.0/0 (H)" in result.stderr
    assert "1 skipped" in result.stderr and "\x1b" not in result.stderr


def test_a_directory_format_needs_out(tmp_path):
    result = invoke(tmp_path, PLAN, "--format", "dovecot", "--now", "2026-03-03")
    assert result.exit_code == 2 and "--out DIR" in result.stderr


def test_password_hashes_are_read_for_the_reset_accounts(tmp_path):
    hashes = tmp_path / "users"
    hashes.write_text(
        "# comment\nmallory@example.org:{SHA512-CRYPT}$6$s$h:1000:1000::/home::\nbob@example.org:{PLAIN}x\n"
    )
    out = tmp_path / "dv"
    result = invoke(tmp_path, PLAN, "--format", "dovecot", "--out", str(out), "--now", "2026-03-03",
                    "--password-hashes", str(hashes))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert body((out / "reset").read_text()) == ["mallory@example.org:{SHA512-CRYPT}$6$s$h::::::"]
    assert str(out.resolve()) in (out / "detector.conf").read_text()


def test_pseudonymised_plan_warns_that_account_measures_match_no_one(tmp_path):
    from detector.report.parquet import write_parquet

    f = tmp_path / "recommendations.parquet"
    write_parquet(PLAN, f, {"pseudonymized": "true"})
    result = CliRunner().invoke(app, ["export", "--plan", str(f), "--format", "dovecot", "--out",
                                      str(tmp_path / "dv"), "--now", "2026-03-03"])  # fmt: skip
    assert (
        result.exit_code == 0 and "pseudonymised" in result.stderr and "match no real user" in result.stderr
    )
    plain = invoke(
        tmp_path, PLAN, "--format", "dovecot", "--out", str(tmp_path / "dv2"), "--now", "2026-03-03"
    )
    assert "plan is pseudonymised" not in plain.stderr


def test_expired_measures_are_counted_per_format():
    later = NOW + timedelta(
        hours=30
    )  # seven blocks (one already) and the lock expired; the restriction (72 h) holds
    done = render(PLAN, "dovecot", now=later)
    assert done.tally.expired == 8 and json.dumps(done.tally.skipped) == "[]"


def test_explain_shows_hostile_log_lines_and_names_escaped():
    from detector.detect.findings import FINDING_SCHEMA
    from detector.schema import C
    from detector.score.explain import Explanation, LogLine, render

    ex = Explanation(
        kind="source",
        target="198.51.100.7",
        verdict={"verdict": "malicious", C.RISK_SCORE: 0.9, C.AS_ORG: "Evil\x1b]0;title\x07 Org",
                 "accounts_targeted": 1, "attempts": 1, "failures": 1, "successes": 0},
        findings=pl.DataFrame(schema=FINDING_SCHEMA),
        lines=(LogLine("mail\x1b[8m.log", 3, "user=<x\x1b[2J\x1b[31mOK> [rip=1.2.3.4]", 0.9),),
    )  # fmt: skip
    console = Console(record=True, width=200, force_terminal=False)
    render(ex, console)
    text = console.export_text()
    assert "\x1b" not in text and "\\x1b[2J" in text and "\\x1b]0;title" in text


def test_files_with_names_or_hashes_are_not_world_readable_and_modes_survive_a_new_export(tmp_path):
    out = tmp_path / "dv"
    args = ["--format", "dovecot", "--out", str(out), "--now", "2026-03-03"]
    assert invoke(tmp_path, PLAN, *args).exit_code == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {"detector.conf": 0o644, "block-nets": 0o644, "accounts": 0o640, "reset": 0o640}
    (out / "reset").chmod(0o600)
    assert invoke(tmp_path, PLAN, *args).exit_code == 0
    assert (out / "reset").stat().st_mode & 0o777 == 0o600
    assert not list(out.glob(".*.tmp"))
