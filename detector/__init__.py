"""detector: mail-account credential-abuse detection with scoped, cost-aware response plans."""

import os

__version__ = "0.1.0"

ALLOCATOR = "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
"""Polars' allocator (jemalloc) returns freed pages to the system at once, from a background
thread, instead of keeping them (polars' own setting: half a second dirty, then a second "muzzy",
purged only when the allocator next runs): a night's steps free and allocate hundreds of MiB in
quick succession, and the kept pages counted in every later step's peak (measured on 800,000
events' scoring: 695 -> 609 MiB peak, results identical). Read by jemalloc when polars loads, so
it only takes effect when ``detector`` is imported before polars (the ``detector`` command, its
worker processes); a value already in the environment (``_RJEM_MALLOC_CONF``) wins (polars
appends it to its own). docs/operations.md, "Memory"."""

os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR)
