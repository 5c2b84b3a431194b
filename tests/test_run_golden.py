"""Golden end-to-end run on data/samples: key counts must match tests/golden/samples.json (`make golden`)."""

import json

import polars as pl
import pytest
from rich.console import Console

from detector.parquet_meta import read_metadata
from detector.report import contract
from detector.report.summary import print_summary
from detector.schema import C
from tests.golden import GOLDEN, key_counts, run_samples

pytestmark = pytest.mark.slow


def test_samples_match_golden(tmp_path):
    result = run_samples(tmp_path / "out")
    got = key_counts(result.summary)
    want = json.loads(GOLDEN.read_text())
    assert got == want, "behaviour changed on data/samples: review, then `make golden`"

    meta = read_metadata(tmp_path / "out" / "events.parquet")
    assert meta["geoip"], "sample GeoIP databases recorded"
    assert meta["model_id"] and meta["model_card_sha256"]
    assert {i["path"].rsplit("/", 1)[-1] for i in meta["inputs"]}
    for name in contract.ALL_FILES:
        assert (tmp_path / "out" / name).exists()

    # the reports agree: the plan resets exactly the accounts the verdicts call compromised
    accounts = pl.read_parquet(tmp_path / "out" / "accounts.parquet")
    plan = pl.read_parquet(tmp_path / "out" / "recommendations.parquet")
    resets = set(plan.filter(pl.col("action") == "reset_credentials")["target"])
    assert resets == set(accounts.filter(pl.col("verdict") == "compromised")[C.ACCOUNT])

    console = Console(width=100, record=True)
    print_summary(result.summary, console)
    assert len(console.export_text().splitlines()) <= 45
