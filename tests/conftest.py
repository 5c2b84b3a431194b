"""Suite-wide settings and fixtures."""

from __future__ import annotations

import pytest
from hypothesis import settings

# No per-example deadline: the suite runs on loaded 2-core machines (CI, several jobs at once),
# where a slow example says nothing about the property. Example counts stay as each test sets them.
settings.register_profile("detector", deadline=None)
settings.load_profile("detector")


@pytest.fixture(autouse=True)
def _kernel_on_small_inputs(monkeypatch):
    """Test inputs are small; ``kernel = "auto"`` would leave them to the polars parsers. Lowering
    its size threshold sends every test's mostly-Dovecot input through the compiled kernel too, so
    the whole suite checks it against its expectations."""
    from detector.ingest import kernel

    monkeypatch.setattr(kernel, "AUTO_MIN_BYTES", 0)
