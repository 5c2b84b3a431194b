"""Imports follow the pipeline: ingest -> enrich -> features -> detect -> score -> recommend ->
report. A stage imports earlier stages and the common layer, never a later stage (not even inside
a function); what two stages share lives in the earlier one or in the common layer. Read from the
source (ast), so a lazy import counts as much as one at the top."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "detector"
STAGES = ("ingest", "enrich", "features", "detect", "score", "recommend", "report")
COMMON = {
    "errors": "the root exception and its subclasses",
    "schema": "column names, types and enums",
    "terminal": "text on its way to a terminal (control characters shown as escapes)",
    "parquet_meta": "key-value metadata of the Parquet files detector writes",
    "jsonout": "JSON of frames and dataclasses",
    "logging_setup": "log lines and step timings",
    "labels": "ground-truth labels of simulated or analyst-confirmed events",
    "simulate": "the synthetic world that training and tests run on",
    "parts": "rows split into parts by a hash of a key (shards, source buckets, group-by parts)",
}
"""The common layer: any stage may import it, and it imports no stage."""
SHARED = {
    "detector": "the package itself (its version)",
    "config": "configuration; loading it checks the configured detectors (detect's registry)",
    "workers": "the process pool stages run their shards on (workers import the shard functions)",
    "engine": "the analysis path (enrich to score) that training and replay run again",
}
"""Services a stage may import that themselves reach into stages to configure or run them."""
ORCHESTRATION = ("__main__", "cli", "runner", "pipeline", "spark", "serve", "state", "publish")
"""They run the stages (and the nightly state around them): they may import everything, and no
stage imports them."""


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the file, nested ones included; ``from x
    import y`` gives ``x.y`` (``y`` may be a module)."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def _unit(name: str) -> str | None:
    """The top-level unit of ``detector`` a dotted name belongs to (``detector`` for the package
    itself), or None outside the package."""
    parts = name.split(".")
    if parts[0] != "detector":
        return None
    if len(parts) > 1 and ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()):
        return parts[1]
    return "detector"


def _units() -> list[str]:
    return sorted(
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    )


def _files(unit: str) -> list[Path]:
    d = PACKAGE / unit
    return sorted(d.rglob("*.py")) if d.is_dir() else [PACKAGE / f"{unit}.py"]


def violations(unit: str) -> list[str]:
    """What the files of ``unit`` import that its place in the layout does not allow."""
    if unit in STAGES:
        allowed = set(STAGES[: STAGES.index(unit) + 1]) | set(COMMON) | set(SHARED)
    elif unit in COMMON:
        allowed = set(COMMON)
    else:
        return []
    out = []
    for path in _files(unit):
        for line, name in _imports(path):
            target = _unit(name)
            if target is not None and target not in allowed:
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return out


def test_every_unit_has_a_place():
    """A new module or package is placed in the layout before any stage may import it."""
    placed = set(STAGES) | set(COMMON) | set(SHARED) | set(ORCHESTRATION)
    assert sorted(set(_units()) - placed) == []
    assert sorted(placed - set(_units()) - {"detector"}) == []


@pytest.mark.parametrize("unit", [*STAGES, *COMMON])
def test_imports_follow_the_pipeline(unit):
    assert violations(unit) == []


def test_a_later_stage_import_is_caught(tmp_path, monkeypatch):
    """The check itself: a lazy import of a later stage in a stage module is reported."""
    pkg = tmp_path / "detector"
    for d in ("score", "report"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "schema.py").write_text("")
    (pkg / "score" / "explain.py").write_text(
        "from detector.schema import C\n\ndef render():\n    from detector.report.terminal import safe\n"
    )
    (pkg / "score" / "rel.py").write_text("from ..report import x\nfrom . import explain\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert violations("score") == [
        "detector/score/explain.py:4 imports detector.report.terminal.safe",
        "detector/score/rel.py:1 imports detector.report.x",
    ]
    assert violations("report") == []
