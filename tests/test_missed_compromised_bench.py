"""bench/missed_compromised.py: the class of a missed compromised account, and its seed guard."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "missed_compromised.py"


@pytest.fixture(scope="module")
def mc():
    spec = importlib.util.spec_from_file_location("missed_compromised", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(verdicts, successes=1, anonymous=False, legit=1, others=0) -> dict:
    return {
        "nights": [{"verdict": v} for v in verdicts],
        "attacker_successes": successes,
        "break": {"anonymous": anonymous, "ip_legit_accounts": legit, "source_other_accounts": others},
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (row(["targeted", "compromised"]), "scored-compromised-not-entered"),
        (row(["suspicious"]), "under-threshold"),
        (row(["clean"], successes=0), "not-seen"),
        (row(["clean"], successes=3), "takeover: residential"),
        (row(["targeted"], successes=2, anonymous=True), "takeover: anonymous"),
        (row(["clean"], anonymous=True), "first-try: hosting/VPN/Tor"),
        (row(["clean"], legit=45), "first-try: shared address"),
        (row(["targeted"], others=0), "first-try: one-use residential proxy"),
        (row(["targeted"], others=4), "first-try: residential proxy"),
        (row(["targeted"], legit=None, others=4), "first-try: residential proxy"),
    ],
)
def test_classify(mc, case, expected):
    assert mc.classify(case) == expected


def test_recorded_seeds_are_refused(mc):
    import tomllib

    record = BENCH.with_name("fresh_worlds.toml")
    seed = tomllib.loads(record.read_text())["world"][0]["seed"]
    with pytest.raises(SystemExit, match="recorded fresh or tuned"):
        mc.main(["--seed", str(seed)])
    with pytest.raises(SystemExit, match="recorded fresh or tuned"):
        mc.main(["--seed", "11"])
