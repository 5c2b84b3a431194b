"""Docs that cannot rot: every command has help, every report column and metadata key is documented."""

import re
from pathlib import Path

import pytest
import typer.main

from detector.cli import app
from detector.report import contract

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _commands(group, prefix: str = "") -> list:
    out = []
    for name, cmd in group.commands.items():
        out.append((f"{prefix}{name}", cmd))
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, f"{prefix}{name} "))
    return out


def _options(cmd) -> list:
    return [p for p in cmd.params if getattr(p, "param_type_name", "") == "option" and p.name != "help"]


COMMANDS = _commands(typer.main.get_command(app))


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help(name, cmd):
    assert (cmd.help or "").strip(), f"`detector {name}` has no help text"
    for param in _options(cmd):
        assert (param.help or "").strip(), f"`detector {name}` option {param.opts} has no help text"


def _section(text: str, file: str) -> str:
    start = text.index(f"### `{file}`")
    nxt = text.find("\n### ", start + 1)
    return text[start : nxt if nxt >= 0 else len(text)]


@pytest.mark.parametrize("report", contract.PARQUET_REPORTS, ids=lambda r: r.name)
def test_every_report_column_is_documented(report):
    section = _section((DOCS / "reports.md").read_text(), report.name)
    for column in report.columns():
        row = f"| `{column.name}` | `{contract.type_name(column.dtype)}` |"
        assert row in section, (
            f"docs/reports.md lacks {row} under {report.name} (regenerate: markdown_tables())"
        )


def test_every_metadata_key_and_file_is_documented():
    text = (DOCS / "reports.md").read_text()
    for key in contract.Meta.ALL:
        assert f"`{contract.META_PREFIX}{key}`" in text
    for name in contract.ALL_FILES:
        assert f"`{name}`" in text


def test_operations_doc_lists_exit_codes_and_options():
    text = (DOCS / "operations.md").read_text()
    for code in ("0", "1", "2", "3"):
        assert re.search(rf"\|\s*`?{code}`?\s*\|", text), f"exit code {code} not documented"
    run = dict(COMMANDS)["run"]
    for param in _options(run):
        assert param.opts[0] in text, f"{param.opts[0]} not documented in docs/operations.md"
