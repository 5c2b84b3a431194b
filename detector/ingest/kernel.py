"""A compiled fast path for the commonest lines: RFC 3164 syslog + Dovecot logins, login failures,
passdb failures and logouts (see docs/ingest.md, "The compiled kernel").

A strict fast path, never a second parser: :func:`split` runs one compiled pass (numba) over the
raw bytes of a batch and takes only the lines it recognises *completely*, in exactly the shapes
where the polars parsers (the reference) give known values; every other line, and every line with
anything unusual (non-ASCII or control bytes, a user name outside ``[A-Za-z0-9._@+-]``, an
unknown level, passdb reason or field order, a second marker, a field that does not end where it
must, a date that does not exist, ...) goes on to the polars parsers unchanged. So the kernel can
be less complete than them, never more permissive; the tests compare both frame for frame.

What it takes (Dovecot in an RFC 3164 envelope with ``dovecot`` or ``dovecot[pid]`` as tag):

* ``*-login: Login: user=<u>, method=M, rip=A, lip=B[, mpid=N][, TLS|, secured], session=<S>``
* ``*-login: ... (auth failed, N attempts ...): user=<u>, method=M, rip=A, lip=B[...], session=<S>``
* ``auth[-worker(N)]: <passdb>(u,A[,<S>]): Password mismatch|unknown user``
* ``imap(u)<pid><S>: ... in=N out=M ...`` and ``pop3(u)<pid><S>: ... retr=N/SIZE, ..., size=S``
* the Dovecot noise kinds ``noise:dovecot_login``, ``noise:dovecot_mail``, ``noise:dovecot_other``
  (counted, never written).

Compiled code is cached on disk (:func:`cache_dir`), so the JIT cost (about 10 s) is paid once per
machine and version; ``make install`` compiles it ahead of a first run (:func:`warm`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa

from detector.config import KERNEL_MODES
from detector.ingest.parsers.postfix import _AGENTS
from detector.schema import UTC_US, Action, C, Outcome, Service

MODES = KERNEL_MODES
"""``[ingest] kernel``: ``auto`` uses it where numba is installed, ``on`` requires it, ``off`` never."""

# line kinds the kernel emits (0: not taken, the polars parsers read the line); the numbers are
# those of detector.ingest._kernel_impl (checked by the tests)
TAKEN_NOT = 0
LOGIN_OK, LOGIN_FAIL, AUTH, LOGOUT = 1, 2, 3, 4
PF_CLIENT, PF_SASL_FAIL, PF_SASL_ABORT, PF_AFTER_AUTH, PF_DISC_AUTH, PF_BOUNDARY, PF_QMGR = (
    5,
    6,
    7,
    8,
    9,
    10,
    11,
)
LAST_ROW = PF_QMGR
"""Kinds up to this one are rows of the output; the ones above are noise, only counted."""
FOREIGN = 19
"""Another program's line: ``noise:unclaimed`` unless a parser may claim it (see :func:`split`)."""
NOISE_KINDS = {
    20: "noise:dovecot_login",
    21: "noise:dovecot_mail",
    22: "noise:dovecot_other",
    23: "noise:connect",
    24: "noise:client",
    25: "noise:smtpd_other",
    26: "noise:postfix_other",
    **{27 + i: f"noise:postfix_{agent}" for i, agent in enumerate(_AGENTS)},
}
ROW_KIND = {PF_BOUNDARY: "noise:disconnect", PF_QMGR: "noise:qmgr"}
"""The parsers' ``kind`` of rows that are not events (kept for ``correlate``); the others are events."""
STAGES = {
    LOGIN_FAIL: "dv_login_fail",
    AUTH: "dv_auth",
    PF_CLIENT: "pf_client",
    PF_SASL_FAIL: "pf_sasl_fail",
    PF_SASL_ABORT: "pf_sasl_fail",
    PF_AFTER_AUTH: "pf_after_auth",
    PF_DISC_AUTH: "pf_disconnect",
    PF_BOUNDARY: "pf_boundary",
    PF_QMGR: "pf_qmgr",
}
ACTIONS = {LOGOUT: Action.LOGOUT, PF_BOUNDARY: None, PF_QMGR: Action.SEND}
"""Actions other than ``login``."""
SERVICES = {1: Service.IMAP, 2: Service.POP3, 3: Service.SUBMISSION, 4: Service.MANAGESIEVE, 5: Service.SMTP}
# string fields, as (start, end) byte offsets into the batch's text
F_HOST, F_ACCOUNT, F_SOURCE_IP, F_LOCAL_IP, F_METHOD, F_SESSION, F_REASON, F_SMTPD = range(8)
N_FIELDS = 8
# integer fields (-1: null)
I_ATTEMPTS, I_BYTES_IN, I_BYTES_OUT, I_MESSAGE_SIZE, I_OUTCOME, I_TLS, I_SERVICE, I_V6 = range(8)
I_RECIPIENTS, I_REASON = 8, 9
N_INTS = 10
OUTCOMES = {
    1: Outcome.SUCCESS,
    2: Outcome.FAILURE,
    3: Outcome.UNKNOWN_USER,
    4: Outcome.UNKNOWN,
    5: Outcome.TEMPFAIL,
}
AFTER_AUTH = ("lost connection", "timeout", "too many errors", "improper command pipelining")
REASONS = {
    1: "authentication failure",
    2: "Connection lost to authentication server",
    3: "authentication aborted",
    4: "auth command failed",
    **{5 + i: f"{w} after AUTH" for i, w in enumerate(AFTER_AUTH)},
}
"""Reasons by code (``I_REASON``); Dovecot's are read from the line (``F_REASON``)."""

CACHE_ENV = "NUMBA_CACHE_DIR"


def cache_dir() -> Path:
    """Where compiled code is cached: ``$NUMBA_CACHE_DIR`` if set, else systemd's
    ``$CACHE_DIRECTORY`` (``CacheDirectory=detector`` in the unit: a service user that cannot write
    into the installation), else ``$XDG_CACHE_HOME`` or ``~/.cache``, else the temporary directory;
    each with ``detector/numba`` below it, the first that is ours (see :func:`_ours`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    candidates = []
    if os.environ.get("CACHE_DIRECTORY"):
        candidates.append(Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / "numba")
    xdg = os.environ.get("XDG_CACHE_HOME")
    candidates.append((Path(xdg) if xdg else Path.home() / ".cache") / "detector" / "numba")
    candidates.append(Path(tempfile.gettempdir()) / f"detector-numba-{os.getuid()}")
    for c in candidates:
        try:
            c.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            continue
        if _ours(c) and os.access(c, os.W_OK):
            return c
    # nowhere safe to keep compiled code: a private directory of this process (compiles each run)
    return Path(tempfile.mkdtemp(prefix="detector-numba-"))


def _ours(path: Path, *, owners: tuple[int, ...] = ()) -> bool:
    """``path`` belongs to this user (or one of ``owners``) and no one else may write into it.
    numba's cache index is a pickle: whoever can write it runs code as the reader, so a directory
    someone else made (``/tmp/detector-numba-<uid>`` planted by another local user) is never used."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid in (os.getuid(), *owners) and not st.st_mode & 0o022


SEED_ENV = "DETECTOR_KERNEL_SEED"


def seed_dir() -> Path:
    """The compiled kernel shipped with the installation: ``$DETECTOR_KERNEL_SEED``, else
    ``<sys.prefix>/share/detector/numba``. Written by whoever installs (``make install``,
    ``python -m detector.ingest.kernel_seed``), read by every user: a service user or a Spark executor
    whose cache holds no kernel copies it there (a few milliseconds) instead of compiling it."""
    given = os.environ.get(SEED_ENV)
    return Path(given) if given else Path(sys.prefix) / "share" / "detector" / "numba"


IMPL = "_kernel_impl"


def _cache_subdir(cache: Path) -> Path | None:
    """The directory numba keeps the kernel's compiled files in under ``cache`` (it depends on
    where the source is installed); None if this numba does not say."""
    import importlib.util

    try:
        from numba.core.caching import _CacheLocator
    except ImportError:  # pragma: no cover - another numba layout: no seed, numba compiles
        return None
    spec = importlib.util.find_spec(f"detector.ingest.{IMPL}")
    if spec is None or spec.origin is None:
        return None
    return cache / _CacheLocator.get_suitable_cache_subpath(spec.origin)


def _from_seed(cache: Path) -> int:
    """Copy the seed's compiled files into ``cache`` when it holds no kernel yet; returns the
    number of files copied. Each file lands under a temporary name and is renamed, so parallel
    workers starting together never read half a file."""
    seed = seed_dir()
    target = _cache_subdir(cache)
    if target is None or not seed.is_dir() or not _ours(seed, owners=(0,)):
        return 0
    files = [f for f in seed.glob(f"{IMPL}.*") if f.suffix in (".nbi", ".nbc") and _ours(f, owners=(0,))]
    index = [f for f in files if f.name.startswith(f"{IMPL}.scan-") and f.suffix == ".nbi"]
    if not index or all(_same(f, target / f.name) for f in index):
        return 0  # no seed, or the cache has this kernel already
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        for f in files:
            tmp = target / f".{f.name}.{os.getpid()}.tmp"
            shutil.copyfile(f, tmp)
            os.replace(tmp, target / f.name)
    except OSError:
        return 0  # numba compiles instead
    return len(files)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def write_seed(seed: Path | None = None) -> int:
    """Compile (or load) the kernel, then copy its compiled files into ``seed`` (default
    :func:`seed_dir`) for other users of this installation; returns the number of files."""
    warm()
    seed = seed or seed_dir()
    source = _cache_subdir(Path(os.environ[CACHE_ENV]))
    if source is None:
        return 0
    # the current source's files, found by what numba's index names (a filter on modification
    # times dropped them whenever the source was rewritten with the same content: a checkout, a
    # merge, a copy); every file where this numba does not say
    files = _live_files() or list(source.glob(f"{IMPL}.*"))
    seed.mkdir(parents=True, exist_ok=True)
    for old in seed.glob(f"{IMPL}.*"):
        old.unlink()
    for f in files:
        shutil.copyfile(f, seed / f.name)
        os.chmod(seed / f.name, 0o644)
    return len(files)


ENTRY_POINTS = ("scan", "all_views", "plain_v6")
"""The compiled functions Python calls; each one's cached code holds what it calls."""


def _live_files() -> list[Path]:
    """The cache files of the current source's entry points: each one's index and the data files
    it names. A cache also holds the files of every earlier source (numba names them by function
    and line, and keys them on a hash of the source's content, so they are inert) and of the
    functions the entry points call: 6 files to ship instead of hundreds. Empty where this numba
    does not say (its cache layout is not public)."""
    from detector.ingest import _kernel_impl

    files = []
    try:
        for name in ENTRY_POINTS:
            cache = getattr(_kernel_impl, name)._cache._cache_file
            index = Path(cache._index_path)
            files += [index, *(index.parent / data for data in cache._load_index().values())]
    except (AttributeError, OSError, TypeError):  # pragma: no cover - another numba layout
        return []
    return files if all(f.is_file() for f in files) else []


_LOCK = threading.Lock()
_COMPILED: dict[str, object] = {}


def available() -> bool:
    """numba is installed (the kernel can run). Not imported here: that alone costs about 100 MiB."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _scan_fn():
    """The compiled scan, built (or loaded from the cache) once per process."""
    with _LOCK:
        fn = _COMPILED.get("scan")
        if fn is None:
            if not os.environ.get(CACHE_ENV):
                # numba reads its cache location when it is imported (or its configuration reloaded)
                os.environ[CACHE_ENV] = str(cache_dir())
                if "numba" in sys.modules:
                    from numba.core import config

                    config.reload_config()
            _from_seed(Path(os.environ[CACHE_ENV]))
            with _without_blas():
                from detector.ingest import _kernel_impl

            fn = _COMPILED["scan"] = _kernel_impl.scan
        return fn


BLAS = "scipy.linalg.cython_blas"


@contextmanager
def _without_blas() -> Iterator[None]:
    """Load numba without SciPy's BLAS: numba probes it while loading its array functions
    (``numba.np.arraymath``), importing ``scipy.linalg`` for about 0.15 s of CPU per process,
    though the kernel does no linear algebra. Marking the module absent makes the probe fail
    (numba then lacks ``np.dot`` and friends, which the kernel never uses); the mark is removed
    afterwards, so a later ``import scipy.linalg`` (scikit-learn in ``detector run``) works. Where
    SciPy's BLAS is already loaded, nothing is saved and nothing is marked. Another thread importing
    ``scipy.linalg`` during the load (a few tenths of a second) would fail: none of ingestion's
    threads does, and ``detector run`` imports scikit-learn only in the steps after ingestion."""
    if BLAS in sys.modules:
        yield
        return
    sys.modules[BLAS] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if BLAS in sys.modules and sys.modules[BLAS] is None:
            del sys.modules[BLAS]


def enabled(mode: str) -> bool:
    """Whether a batch goes through the kernel first (with a fixed year too: the reader hands the
    kernel only batches whose stamps all read in that year, :func:`detector.ingest.envelope.advance_year`)."""
    if mode == "off":
        return False
    if mode == "on":
        return True
    return available()


AUTO_SHARE = 0.5
"""With ``kernel = "auto"``, an input goes through the kernel when at least this share of its first
batch's lines carry Dovecot's syslog tag. Below, the kernel's fixed cost (0.5 s of CPU and about
200 MiB to load numba and the compiled code) and its pass over lines it cannot take outweigh what
it saves: on the MTA bench profile (36 % Dovecot lines) it cost 0.5-0.9 s more CPU per million
lines, on the IMAP profile (98 %) it saved 1 us per line."""


AUTO_MIN_BYTES = 64 * 1024 * 1024
"""With ``kernel = "auto"``, a run whose text inputs are smaller than this (about 350,000 IMAP
log lines; compressed files count by their compressed size) leaves the kernel off: loading it
(0.5 s of CPU) costs more than it saves (about 1 us per line). Stdin counts as large."""


def wanted(mode: str, first: pl.DataFrame, text_bytes: int | None = None) -> bool:
    """Whether an input whose first batch is ``first`` goes through the kernel, in a run of
    ``text_bytes`` of text input (see :data:`AUTO_SHARE`, :data:`AUTO_MIN_BYTES`)."""
    if not enabled(mode):
        return False
    if mode == "on":
        return True
    if first.is_empty() or (text_bytes is not None and text_bytes < AUTO_MIN_BYTES):
        return False
    raw = pl.col(C.RAW)
    tagged = (
        raw.str.contains(" dovecot: ", literal=True)
        | raw.str.contains(" dovecot[", literal=True)
        | raw.str.contains(" postfix", literal=True)
    )
    return bool(first.select(tagged.mean()).item() >= AUTO_SHARE)


@dataclass(frozen=True)
class Taken:
    """What the kernel read of a batch: its events (the parsers' output columns) and noise counts."""

    events: pl.DataFrame
    noise: Counter
    lines: int


def _limit(reference: datetime | None, timezone: str) -> tuple[int, int]:
    """The RFC 3164 year rule of the envelope (``envelope._bsd_years_expr`` without a fixed year):
    a stamp ``MM-DD HH:MM:SS`` at or before the limit's is in the limit's year, else the year
    before. Returns (limit as the number MMDDhhmmss, limit year)."""
    ref = reference or datetime.now().astimezone()
    local = (ref + timedelta(days=1)).astimezone(ZoneInfo(timezone))
    key = (((local.month * 100 + local.day) * 100 + local.hour) * 100 + local.minute) * 100 + local.second
    return key, local.year


def split(
    batch: pl.DataFrame,
    *,
    timezone: str,
    reference: datetime | None,
    private: tuple[str, ...],
    claimable: pl.Expr | None = None,
) -> tuple[Taken, pl.DataFrame]:
    """Take the lines of ``batch`` (``raw`` + ``source_file``, ``line_number``) the kernel reads;
    return them as parsed rows and the rest of ``batch`` (in its order) for the polars parsers.

    Lines of other programs (cron, sshd, kernel, ...) that ``claimable`` (over ``host``,
    ``program`` and ``message``) says no parser may claim are counted as ``noise:unclaimed``
    here, as the polars path would count them; the others, and all of them without
    ``claimable``, go to the polars parsers."""
    from detector.ingest.envelope import _localize
    from detector.ingest.fields import OUTPUT_SCHEMA, _canon_v6
    from detector.ingest.registry import KIND

    raw = batch[C.RAW].to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    n = len(raw)
    bufs = raw.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[raw.offset : raw.offset + n + 1]
    data = np.frombuffer(bufs[2] if bufs[2] is not None else b"", dtype=np.uint8)
    # the scan writes every slot of each line: nothing to fill beforehand
    kinds = np.empty(n, np.int8)
    stamps = np.empty(n, np.int64)
    zones = np.empty(n, np.int8)  # 1: the stamp is UTC already (an ISO 8601 stamp with its offset)
    spans = np.empty((n, 2 * N_FIELDS), np.int64)
    ints = np.empty((n, N_INTS), np.int64)
    key, year = _limit(reference, timezone)
    _scan_fn()(data, offsets, key, year, kinds, stamps, zones, spans, ints)
    if timezone != "UTC":
        # a local time that does not exist (the hour skipped in spring) has no stamp: the
        # envelope quarantines such lines, so the kernel leaves them to it
        some = np.flatnonzero((kinds != TAKEN_NOT) & (zones == 0))
        local = pl.select(
            _localize(pl.lit(pl.Series(stamps[some]).cast(pl.Datetime("us"))), timezone)
        ).to_series()
        kinds[some[local.is_null().to_numpy()]] = TAKEN_NOT
    foreign = np.flatnonzero(kinds == FOREIGN)
    unclaimed = 0
    if len(foreign):
        claimed = (
            np.ones(len(foreign), bool) if claimable is None else _claimed(data, spans, foreign, claimable)
        )
        kinds[foreign[claimed]] = TAKEN_NOT
        unclaimed = len(foreign) - int(claimed.sum())

    rows = np.flatnonzero((kinds >= LOGIN_OK) & (kinds <= LAST_ROW))
    texts = _strings(data, spans, rows, TEXT_FIELDS)
    sip, lip = texts[F_SOURCE_IP], texts[F_LOCAL_IP]
    # IPv6 text not already written as Python writes it (the scan checks) is made canonical by
    # the function the parsers use (once per distinct value); what is then no valid address goes
    # back to the parsers, whose screen quarantines it
    v6 = ints[rows, I_V6] > 0
    if v6.any():
        of_v6 = pl.Series(v6)
        at = np.flatnonzero(v6)
        sip6, lip6 = _canon_v6(sip.filter(of_v6)), _canon_v6(lip.filter(of_v6))
        sip, lip = sip.clone(), lip.clone()
        sip.scatter(at, sip6)
        lip.scatter(at, lip6)
        ok = np.ones(len(rows), bool)
        ok[v6] = _valid_both(sip6, lip6)
        if not ok.all():
            kinds[rows[~ok]] = TAKEN_NOT
            keep = pl.Series(ok)
            rows, sip, lip = rows[ok], sip.filter(keep), lip.filter(keep)
            texts = {f: t.filter(keep) for f, t in texts.items()}

    noise: Counter = Counter()
    counts = np.bincount(kinds.view(np.uint8), minlength=max(NOISE_KINDS) + 1)
    for k, name in NOISE_KINDS.items():
        if counts[k]:
            noise[name] += int(counts[k])
    if unclaimed:
        noise[UNCLAIMED] += unclaimed
    taken = kinds != TAKEN_NOT
    rest = batch.filter(pl.Series(~taken)) if taken.any() else batch
    if not len(rows):
        return Taken(
            pl.DataFrame(schema={**OUTPUT_SCHEMA, **dict.fromkeys(private, pl.String)}),
            noise,
            int(taken.sum()) - unclaimed,
        ), rest

    kind = kinds[rows]
    iv = ints[rows]

    def num(i: int, dtype: pl.DataType) -> pl.Series:
        v = np.ascontiguousarray(iv[:, i])
        arr = pa.Array.from_buffers(pa.int64(), len(v), [_validity(v >= 0), pa.py_buffer(v)])
        return pl.Series(pl.from_arrow(arr)).cast(dtype)

    naive = pl.Series(stamps[rows], dtype=pl.Int64).cast(pl.Datetime("us"))
    utc = pl.Series(zones[rows] == 1)
    frame = pl.DataFrame(
        {
            "_k": pl.Series("_k", kind),
            "_ts": naive,
            "_utc": utc,
            C.HOST: texts[F_HOST],
            C.SERVICE: _named(iv[:, I_SERVICE], SERVICES),
            C.ACTION: _named(kind, ACTIONS, Action.LOGIN),
            C.OUTCOME: _named(iv[:, I_OUTCOME], OUTCOMES),
            KIND: _named(kind, ROW_KIND, "event"),
            "_stage": _named(kind, STAGES),
            C.ACCOUNT: texts[F_ACCOUNT],
            C.SOURCE_IP: sip,
            C.LOCAL_IP: lip,
            C.AUTH_METHOD: texts[F_METHOD],
            C.TLS: num(I_TLS, pl.Int8).cast(pl.Boolean),
            C.SESSION_ID: texts[F_SESSION],
            C.ATTEMPTS: num(I_ATTEMPTS, pl.Int32),
            C.BYTES_IN: num(I_BYTES_IN, pl.Int64),
            C.BYTES_OUT: num(I_BYTES_OUT, pl.Int64),
            C.MESSAGE_SIZE: num(I_MESSAGE_SIZE, pl.Int64),
            C.RECIPIENTS: num(I_RECIPIENTS, pl.Int32),
            "_reason": texts[F_REASON],
            "_rc": _named(iv[:, I_REASON], REASONS),
            "_smtpd": texts[F_SMTPD],
            C.SOURCE_FILE: batch[C.SOURCE_FILE].gather(rows),
            C.LINE_NUMBER: batch[C.LINE_NUMBER].gather(rows),
        }
    )
    k = pl.col("_k")
    cols = {
        C.TIMESTAMP: pl.when(pl.col("_utc"))
        .then(pl.col("_ts").dt.replace_time_zone("UTC"))
        .otherwise(_localize(pl.col("_ts"), timezone).cast(UTC_US)),
        C.DAEMON: pl.when(k <= LOGOUT).then(pl.lit("dovecot")).otherwise(pl.lit("postfix")),
        C.REASON: pl.when(k == LOGIN_FAIL)
        .then(pl.lit("auth failed"))
        .when(pl.col("_rc").is_not_null())
        .then(pl.col("_rc"))
        .otherwise(pl.col("_reason")),
        "_qid": pl.when(k.is_in([PF_CLIENT, PF_QMGR])).then(pl.col(C.SESSION_ID)),
    }
    out = frame.with_columns(**cols).select(
        [
            (pl.col(c) if c in frame.columns or c in cols else pl.lit(None)).cast(t).alias(c)
            for c, t in OUTPUT_SCHEMA.items()
        ]
        + [
            (pl.col(p) if p in cols or p in frame.columns else pl.lit(None)).cast(pl.String).alias(p)
            for p in private
        ]
    )
    return Taken(out, noise, int(taken.sum()) - unclaimed), rest


def _named(codes: np.ndarray, names: dict, default: str | None = None) -> pl.Series:
    """``names[code]`` for each code (``default`` for any other code, -1 included), gathered from a
    column of the few names: a gather copies 16-byte string views, where ``replace_strict``
    looked every row up (a tenth of the kernel's column building). Codes are -1 to 254."""
    lut = np.zeros(256, np.uint32)
    lut[list(names)] = np.arange(1, len(names) + 1, dtype=np.uint32)
    table = pl.Series([default, *names.values()], dtype=pl.String)
    return table.gather(lut[codes.astype(np.uint8)])


UNCLAIMED = "noise:unclaimed"


def _claimed(data: np.ndarray, spans: np.ndarray, at: np.ndarray, claimable: pl.Expr) -> np.ndarray:
    """Which of the FOREIGN lines ``at`` ``claimable`` holds for (null: no), from their program and
    message as the envelope cuts them (every such line has a host)."""
    texts = _strings(data, spans, at, {F_ACCOUNT: 0, F_REASON: 0})
    frame = pl.DataFrame(
        {
            C.HOST: pl.repeat("-", len(at), dtype=pl.String, eager=True),
            "program": texts[F_ACCOUNT],
            "message": texts[F_REASON],
        }
    )
    return frame.select(claimable.fill_null(False)).to_series().to_numpy()


def _validity(ok: np.ndarray) -> pa.Buffer | None:
    """An Arrow validity bitmap of the booleans ``ok`` (None when all hold). Packed by numpy:
    ``pa.array`` of a numpy array imports pandas on its first call (0.4 s of CPU per process)."""
    return None if ok.all() else pa.py_buffer(np.packbits(ok, bitorder="little"))


def _valid_both(sip: pl.Series, lip: pl.Series) -> np.ndarray:
    """Both addresses valid in canonical text (or absent)."""
    from detector.ingest.screen import valid_ip

    return (valid_ip(sip).fill_null(True) & valid_ip(lip).fill_null(True)).to_numpy()


LOWER, UPPER = 1, 2
TEXT_FIELDS = {
    F_HOST: 0,
    F_ACCOUNT: LOWER,
    F_SOURCE_IP: 0,
    F_LOCAL_IP: 0,
    F_METHOD: UPPER,
    F_SESSION: 0,
    F_REASON: 0,
    F_SMTPD: 0,
}
"""The string fields the kernel cuts, with their case (account lower, method upper)."""


def _strings(
    data: np.ndarray, spans: np.ndarray, rows: np.ndarray, fields: dict[int, int]
) -> dict[int, pl.Series]:
    """Fields ``fields`` (field: case) of ``rows`` as String columns of Arrow string views (null where
    the kernel left no span), built by one compiled call without a per-value Python object."""
    from detector.ingest import _kernel_impl

    n, which = len(rows), list(fields)
    views = np.empty((len(which), n, 16), np.uint8)
    valid = np.empty((len(which), n), np.uint8)
    starts = np.empty(len(which) + 1, np.int64)
    cases = np.array([fields[f] for f in which], np.int64)
    extra = _kernel_impl.all_views(data, spans, rows, np.array(which, np.int64), cases, views, valid, starts)
    out = {}
    for i, f in enumerate(which):
        ok = valid[i]
        if not ok.any():
            out[f] = pl.repeat(None, n, dtype=pl.String, eager=True)
            continue
        mask = _validity(ok.view(np.bool_))
        data_buf = pa.py_buffer(extra[starts[i] : starts[i + 1]])
        arr = pa.Array.from_buffers(pa.string_view(), n, [mask, pa.py_buffer(views[i]), data_buf])
        out[f] = pl.Series(pl.from_arrow(arr))
    return out


def warm() -> float:
    """Compile (or load) the kernel and run it on one line; returns the seconds it took."""
    import time

    t = time.perf_counter()
    line = "Nov 20 00:00:00 h dovecot: imap-login: Login: user=<a@b>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, session=<x>"
    batch = pl.DataFrame({C.SOURCE_FILE: ["-"], C.LINE_NUMBER: [1], C.RAW: [line]})
    split(batch, timezone="UTC", reference=None, private=())
    return time.perf_counter() - t


def main() -> None:
    """``python -m detector.ingest.kernel_seed [SEED_DIR]``: the packaging step that ships the compiled
    kernel with an installation (see :func:`seed_dir`)."""
    import time

    seed = Path(sys.argv[1]) if len(sys.argv) > 1 else seed_dir()
    t = time.perf_counter()
    n = write_seed(seed)
    print(
        f"ingestion kernel compiled or loaded, {n} files written to {seed} in {time.perf_counter() - t:.1f} s"
    )
