"""Memory settings of the nightly job that must not silently go away."""

import os
import subprocess
import sys

import pytest

import detector

SHOW = "import detector, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"


def _conf(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_allocator_returns_freed_pages_when_detector_loads_first():
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    # polars puts its own setting first; jemalloc takes the last value of an option
    assert _conf(env).endswith(detector.ALLOCATOR)


@pytest.mark.parametrize("mine", ["dirty_decay_ms:10000", "background_thread:false"])
def test_allocator_setting_from_the_environment_wins(mine):
    env = {**os.environ, "_RJEM_MALLOC_CONF": mine}
    assert _conf(env).endswith("," + mine)
