"""detector: mail-account credential-abuse detection with scoped, cost-aware response plans."""

import os

__version__ = "0.1.0"

ALLOCATOR = "background_thread:true,dirty_decay_ms:500,muzzy_decay_ms:0"
"""Polars' allocator (jemalloc) purges freed pages from a background thread half a second after
they are freed and then returns them to the system, instead of keeping them a further second as
"muzzy" pages purged only when the allocator next runs (polars' own setting): a night's steps free
and allocate hundreds of MiB in quick succession, and kept pages counted in every later step's
peak. Measured on the 2M-line IMAP night (`detector run --workers 1`, quiet machine): polars'
setting 54.7 s wall, 86.0 CPU s, 1,890 MiB; this one 55.9 s, 88.6 CPU s, 1,688 MiB; returning
pages at once (``dirty_decay_ms:0``) 1,300 MiB but 85.8 s and 138.9 CPU s (system time 24.7 ->
67.7 s), which a memory-tight machine can still ask for in ``_RJEM_MALLOC_CONF``. Read by
jemalloc when polars loads, so it only takes effect when ``detector`` is imported before polars
(the ``detector`` command, its worker processes); a value already in the environment wins
(polars appends it to its own). docs/operations.md, "The run's memory"."""

os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR)
