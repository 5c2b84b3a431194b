"""Golden end-to-end expectations: key counts of `detector run` on data/samples.

``python -m tests.golden --update`` (``make golden``) reruns the job on the bundled samples and
rewrites ``tests/golden/samples.json``; ``tests/test_run_golden.py`` checks a fresh run against it.
Review the diff before committing an update: a changed count is a changed behaviour.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
GOLDEN = Path(__file__).resolve().parent / "golden" / "samples.json"


def run_samples(out_dir: Path, **kw: Any) -> Any:
    """Run the nightly job on data/samples as `make run` does."""
    from detector.pipeline import run

    return run(
        [SAMPLES / "logs"],
        out_dir,
        practitioners=SAMPLES / "practitioners.csv",
        geoip_dir=SAMPLES / "geoip",
        **kw,
    )


def key_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The counts a behaviour change would move (no times, ids or floats)."""
    n = summary["night"]
    return {
        "night": {
            k: n[k]
            for k in (
                "lines",
                "events",
                "quarantined",
                "attempts",
                "failures",
                "successes",
                "accounts",
                "sources",
            )
        },
        "window": [n["start"], n["end"]],
        "account_verdicts": dict(sorted(summary["accounts"]["verdicts"].items())),
        "source_verdicts": dict(sorted(summary["sources"]["verdicts"].items())),
        "campaigns": summary["campaigns"]["total"],
        "findings": summary["findings"]["total"],
        "plan": dict(sorted(summary["plan"]["by_action"].items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="rewrite tests/golden/samples.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        counts = key_counts(run_samples(Path(tmp) / "out").summary)
    text = json.dumps(counts, indent=2, sort_keys=True) + "\n"
    if args.update:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
        return 0
    want = GOLDEN.read_text() if GOLDEN.exists() else ""
    if text != want:
        sys.stdout.write(text)
        print("differs from tests/golden/samples.json (run `make golden` to accept)", file=sys.stderr)
        return 1
    print("golden counts match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
