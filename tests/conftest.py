"""Suite-wide fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _kernel_on_small_inputs(monkeypatch):
    """Test inputs are small; ``kernel = "auto"`` would leave them to the polars parsers. Lowering
    its size threshold sends every test's mostly-Dovecot input through the compiled kernel too, so
    the whole suite checks it against its expectations."""
    from detector.ingest import kernel

    monkeypatch.setattr(kernel, "AUTO_MIN_BYTES", 0)
