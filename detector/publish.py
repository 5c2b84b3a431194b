"""Publication of a night's reports and its state generation as one transaction.

A run stages everything first: the reports in ``OUT/.tmp-<run id>/`` and, with ``--state``, the
night's state generation in ``STATE/g<N>/`` (announced beforehand by ``STATE/.pending.json``). Then:

1. **Commit point**: ``OUT/.publish.json`` (the journal: the run, its staged files, the state
   directory and the generation's document) is written, fsynced and renamed into place. Before it,
   nothing of the run is visible and a failure or kill rolls back (the staging directory and the
   staged generation are deleted). After it, the run *will* be published.
2. **Apply** (roll forward, idempotent): each staged report is renamed into ``OUT`` (``summary.json``
   last), ``STATE/state.json`` is pointed at the new generation, ``.pending.json`` and the journal
   are removed.

A run killed during the apply leaves the journal; the next run that uses the output directory (or
the state directory, through ``.pending.json``) finishes the apply before doing anything else, so
the reports and the state always end up from the same night. Details: docs/operations.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detector.errors import OutputError, StateError
from detector.state import (
    DIR_MODE,
    FILE_MODE,
    PENDING_FILE,
    STATE_FILE,
    exclusive,
    fsync_dir,
    locked,
    make_current,
    write_private,
)

JOURNAL = ".publish.json"
OUT_LOCK = ".lock"


def locked_out(out_dir: Path) -> contextlib.AbstractContextManager[Path]:
    """Hold an exclusive lock on the output directory (created 0700 if missing) for one run."""
    return exclusive(out_dir, OUT_LOCK, what="output directory", busy=OutputError)


def make_private(directory: Path) -> None:
    """Modes 0600 for every file and 0700 for every directory under ``directory`` (itself included)."""
    os.chmod(directory, DIR_MODE)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), DIR_MODE)
        for name in files:
            os.chmod(os.path.join(root, name), FILE_MODE)


def announce(state_dir: Path, *, run_id: str, generation: int, out_dir: Path) -> None:
    """Say, before staging generation ``generation``, which journal decides its fate."""
    doc = {"run_id": run_id, "generation": generation, "journal": str((out_dir / JOURNAL).resolve())}
    write_private(state_dir / PENDING_FILE, json.dumps(doc, indent=2))


NEXT_POINTER = ".state.json.next"
"""The new ``state.json``, written before the commit point so that applying it is one rename (no space needed)."""


def commit(
    out_dir: Path,
    staging: Path,
    files: Sequence[str],
    *,
    run_id: str,
    state_dir: Path | None = None,
    generation: dict[str, Any] | None = None,
) -> tuple[Path, ...]:
    """Write the journal (the commit point), then apply it; return the published report paths."""
    make_private(staging)
    if state_dir is not None and generation:
        write_private(state_dir / NEXT_POINTER, json.dumps(generation, indent=2, sort_keys=True))
    doc = {
        "run_id": run_id,
        "staging": staging.name,
        "files": list(files),
        "state_dir": str(state_dir.resolve()) if state_dir is not None and generation else None,
        "generation": generation,
    }
    write_private(out_dir / JOURNAL, json.dumps(doc, indent=2))
    return apply(out_dir)


def apply(out_dir: Path) -> tuple[Path, ...]:
    """Finish the publication the journal in ``out_dir`` describes (safe to repeat after a kill)."""
    journal = out_dir / JOURNAL
    doc = json.loads(journal.read_text(encoding="utf-8"))
    staging = out_dir / doc["staging"]
    published = _publish_reports(out_dir, staging, doc["files"])
    if doc.get("state_dir") and doc.get("generation"):
        _point_state(Path(doc["state_dir"]), doc["run_id"], doc["generation"])
    journal.unlink()
    fsync_dir(out_dir)
    shutil.rmtree(staging, ignore_errors=True)
    return published


def _publish_reports(out_dir: Path, staging: Path, files: Sequence[str]) -> tuple[Path, ...]:
    """Rename the staged reports into ``out_dir``, ``summary.json`` last (each rename is atomic)."""
    published = []
    for name in files:
        src, dst = staging / name, out_dir / name
        if src.exists():  # otherwise renamed before a kill
            os.replace(src, dst)
        published.append(dst)
    fsync_dir(out_dir)
    return tuple(published)


def _point_state(state_dir: Path, run_id: str, generation: dict[str, Any]) -> None:
    """Make the run's generation current: rename the staged pointer (or write it, if a kill lost it)."""
    index = state_dir / STATE_FILE
    current = json.loads(index.read_text(encoding="utf-8")) if index.exists() else {}
    if current.get("run_id") != run_id:
        staged = state_dir / NEXT_POINTER
        if staged.exists() and json.loads(staged.read_text(encoding="utf-8")).get("run_id") == run_id:
            os.replace(staged, index)
            fsync_dir(state_dir)
        else:
            make_current(state_dir, generation)
    _drop_pending(state_dir, run_id)


def _drop_pending(state_dir: Path, run_id: str) -> None:
    pending = state_dir / PENDING_FILE
    with contextlib.suppress(FileNotFoundError, ValueError):
        if json.loads(pending.read_text(encoding="utf-8")).get("run_id") == run_id:
            pending.unlink()
            fsync_dir(state_dir)


def recover_out(out_dir: Path) -> str | None:
    """Under the output lock: finish a publication a killed run committed; return its run id."""
    journal = out_dir / JOURNAL
    if not journal.exists():
        return None
    try:
        doc = json.loads(journal.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OutputError(f"unreadable publication journal: {e}", path=journal) from e
    if doc.get("state_dir") and doc.get("generation"):
        with locked(doc["state_dir"]):
            apply(out_dir)
    else:
        apply(out_dir)
    return str(doc["run_id"])


def recover_state(state_dir: Path, own_out: Path | None = None) -> str | None:
    """Under the state lock: settle a generation a killed run staged; return what was done.

    If its journal exists the run had committed: the publication is finished (taking that output
    directory's lock unless it is ``own_out``, which the caller holds). Otherwise it never
    committed: the staged generation is deleted.
    """
    pending = state_dir / PENDING_FILE
    if not pending.exists():
        return None
    try:
        doc = json.loads(pending.read_text(encoding="utf-8"))
        journal = Path(doc["journal"])
        number = int(doc["generation"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StateError(f"unreadable pending-generation note: {e}", path=pending) from e
    committed = False
    with contextlib.suppress(OSError, ValueError):
        committed = json.loads(journal.read_text(encoding="utf-8")).get("run_id") == doc.get("run_id")
    if committed:
        out_dir = journal.parent
        if own_out is not None and out_dir.resolve() == own_out.resolve():
            apply(out_dir)
        else:
            with locked_out(out_dir):
                apply(out_dir)
        return f"finished the publication of run {doc.get('run_id')} (it was killed after its commit point)"
    shutil.rmtree(state_dir / f"g{number}", ignore_errors=True)
    (state_dir / NEXT_POINTER).unlink(missing_ok=True)
    pending.unlink()
    fsync_dir(state_dir)
    return f"discarded the uncommitted state generation {number} of run {doc.get('run_id')}"
