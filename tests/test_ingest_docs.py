"""Docs that cannot rot: docs/schema.md lists every schema column; docs/ingest.md every parser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detector.ingest import registry
from tests.schema_doc import tables

DOCS = Path(__file__).resolve().parent.parent / "docs"


def sections() -> dict[str, str]:
    text = (DOCS / "schema.md").read_text(encoding="utf-8")
    parts = re.split(r"^## .*\(`(\w+)`\)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("table", list(tables()))
def test_every_schema_column_is_in_docs_schema_md(table):
    body = sections().get(table)
    assert body is not None, f"docs/schema.md has no section for {table}: run python -m tests.schema_doc"
    missing = [c.name for c in tables()[table] if f"| `{c.name}` |" not in body]
    assert not missing, (
        f"{table} columns missing from docs/schema.md: {missing} (run python -m tests.schema_doc)"
    )


@pytest.mark.parametrize("parser", [p.name for p in registry.parsers()])
def test_every_parser_is_documented(parser):
    p = registry.get(parser)
    assert p.doc.strip()
    assert f"`{parser}`" in (DOCS / "ingest.md").read_text(encoding="utf-8"), (
        f"docs/ingest.md does not mention `{parser}`"
    )
