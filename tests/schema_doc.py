"""Render docs/schema.md from the column tables of detector.schema.

.venv/bin/python -m tests.schema_doc        # rewrite docs/schema.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from detector import schema

DOC = Path(__file__).resolve().parent.parent / "docs" / "schema.md"


def tables() -> dict[str, tuple[schema.Column, ...]]:
    """Every ``*_COLUMNS`` tuple of :class:`schema.Column` in detector.schema, in source order."""
    return {
        name: value
        for name, value in vars(schema).items()
        if name.endswith("_COLUMNS")
        and isinstance(value, tuple)
        and all(isinstance(c, schema.Column) for c in value)
    }


def render() -> str:
    out = [
        "# Schema",
        "",
        "Every frame and report column, generated from `detector/schema.py` by",
        "`.venv/bin/python -m tests.schema_doc` (a test fails when a column is missing here).",
        f"Schema version {schema.SCHEMA_VERSION}. Times are UTC with microseconds.",
        "",
    ]
    for name, cols in tables().items():
        title = name.removesuffix("_COLUMNS").replace("_", " ").lower()
        out += [f"## {title} (`{name}`)", "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.dtype} | {c.doc.replace('|', '/')} |" for c in cols]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {DOC}\n")
