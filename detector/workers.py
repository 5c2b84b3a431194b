"""Worker processes for the per-shard steps of detection and scoring (``[engine] workers``).

:class:`Workers` maps a per-shard task ``fn(item, ctx)`` over the shards: in the job's process
with one worker, else in a pool of ``spawn``-ed processes (never ``fork``: the job's process
already runs polars' thread pool). Each worker's polars thread pool is sized so that workers x
threads stay within the cores available (``POLARS_MAX_THREADS``, set before polars is imported
in the worker). The context of a map (``DetectContext``, ``ScoreContext``: history, global
tables, the model) is pickled once into the work directory and each worker loads it once,
instead of once per task. Results come back in the order of the items, whatever the worker count,
so the reports do not depend on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import os
import pickle
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREAD_VARIABLES = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Thread pool sizes a worker inherits: polars, and the BLAS/OpenMP pools of numpy and scikit-learn."""


WORKER_THREADS = "DETECTOR_WORKER_THREADS"
"""Set in a worker process: its share of the cores (threads a task may use)."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(configured: int) -> int:
    """``[engine] workers`` resolved: 0 means the cores available to the process."""
    return configured if configured > 0 else available_cores()


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from ``/proc`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                found += kids
                todo += kids
        except OSError:
            continue
    return found


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) so far of this process (all its threads) and of its child
    processes, ended (reaped) or still running (read from ``/proc``; Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = sum(_proc_cpu(p) for p in _descendants(os.getpid()))
    return own.ru_utime + own.ru_stime, ended.ru_utime + ended.ru_stime + live


_task_cpu = [0.0]
_task_cpu_lock = threading.Lock()


def task_cpu_seconds() -> float:
    """CPU seconds the per-shard tasks of :meth:`Workers.map` took so far, wherever they ran
    (a profile's split of a step into its per-shard and its serial parts)."""
    return _task_cpu[0]


@dataclass(frozen=True)
class ContextFile:
    """A map's context, pickled once into the work directory (what a task receives instead of it)."""

    path: str


_files = itertools.count()
"""Numbers the context and part files of this process's pools (unique names in a work directory)."""

_loaded: tuple[str, Any] | None = None
_parts: dict[str, Any] = {}
"""In a worker: the context parts (:meth:`Workers._publish`) it loaded, by file name."""


class _Unpickler(pickle.Unpickler):
    """Loads a context, each part it names from the worker's cache or (once) from its file."""

    def __init__(self, file: Any, directory: str) -> None:
        super().__init__(file)
        self.directory = directory
        self.used: set[str] = set()

    def persistent_load(self, pid: Any) -> Any:
        name = str(pid)
        if name not in _parts:
            with open(os.path.join(self.directory, name), "rb") as f:
                _parts[name] = pickle.load(f)
        self.used.add(name)
        return _parts[name]


def _context(ctx: Any) -> Any:
    """In a worker: the context a :class:`ContextFile` names, loaded once per map; its parts
    (model, history, tables) once per worker while the maps share them."""
    global _loaded
    if not isinstance(ctx, ContextFile):
        return ctx
    if _loaded is None or _loaded[0] != ctx.path:
        _loaded = None  # free the previous map's context first
        with open(ctx.path, "rb") as f:
            loader = _Unpickler(f, os.path.dirname(ctx.path))
            _loaded = (ctx.path, loader.load())
        for name in set(_parts) - loader.used:  # parts the maps no longer share
            del _parts[name]
    return _loaded[1]


def _call(fn: Callable[[Any, Any], Any], item: Any, ctx: Any) -> tuple[Any, float]:
    """In a worker: ``fn(item, ctx)`` and the CPU seconds it took (loading the context included)."""
    start = time.process_time()
    result = fn(item, _context(ctx))
    return result, time.process_time() - start


def _initialise(threads: int) -> None:
    for name in (*THREAD_VARIABLES, WORKER_THREADS):
        os.environ[name] = str(threads)


def _ready() -> int:
    """Imported in each worker at start, so the first tasks do not pay for it."""
    import detector.detect.shards
    import detector.score.verdicts  # noqa: F401

    return os.getpid()


class Workers:
    """Runs per-shard tasks in this process (``n == 1``) or in up to ``n`` worker processes.

    Use as a context manager (the pool is shut down on exit). The pool starts when the work is
    known (:meth:`start`: no more workers than shards, so a night of one shard never starts a
    process). ``work_dir`` holds the pickled contexts of the maps.
    """

    def __init__(self, n: int, work_dir: str | Path) -> None:
        self.n = max(1, n)
        self.work_dir = Path(work_dir)
        self._pool: ProcessPoolExecutor | None = None
        self._parts: dict[int, tuple[Path, Any]] = {}
        self._active: list[set[int]] = []
        self._lock = threading.Lock()
        """Maps may run from two threads at once (events.parquet's ranges beside the plan's tasks)."""

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def threads(self) -> int:
        """Polars threads per worker: workers x threads within the cores available."""
        return max(1, available_cores() // self.n)

    def start(self, shards: int) -> Workers:
        """Start the workers for ``shards`` shards: ``min(n, shards)`` processes, none for one."""
        if self._pool is None:
            self.n = max(1, min(self.n, shards))
            if self.n > 1:
                self._start()
        return self

    def _start(self) -> None:
        saved = {name: os.environ.get(name) for name in (*THREAD_VARIABLES, WORKER_THREADS)}
        try:
            # spawned processes inherit the environment at start: polars reads POLARS_MAX_THREADS
            # when it is first imported, which may happen before the initializer runs
            _initialise(self.threads)
            self._pool = ProcessPoolExecutor(
                self.n,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_initialise,
                initargs=(self.threads,),
            )
            # start every worker now (a pool starts them on demand), beside the job's own work
            for _ in range(self.n):
                self._pool.submit(_ready)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for path, _ in self._parts.values():
            path.unlink(missing_ok=True)
        self._parts.clear()

    @property
    def parallel(self) -> bool:
        """Tasks run in worker processes (their items and results cross a process boundary)."""
        return self._pool is not None

    def map(self, fn: Callable[[T, Any], R], items: Iterable[T], ctx: Any) -> Iterator[R]:
        """``fn(item, ctx)`` for each item, results in the items' order.

        Lazy: in this process one item at a time; in workers at most two tasks per worker are
        submitted ahead of the result being read, so items and results do not pile up.
        """
        if self._pool is None:
            for item in items:
                start = time.process_time()
                result = fn(item, ctx)
                with _task_cpu_lock:
                    _task_cpu[0] += time.process_time() - start
                yield result
            return
        with self._lock:
            ref, parts = self._publish(ctx)
            self._active.append(parts)
        pending: deque[Future[tuple[R, float]]] = deque()
        try:
            for item in items:
                pending.append(self._pool.submit(_call, fn, item, ref))
                if len(pending) >= 2 * self.n:
                    yield _timed(pending.popleft())
            while pending:
                yield _timed(pending.popleft())
        finally:
            for future in pending:
                future.cancel()
            with contextlib.suppress(FileNotFoundError):
                Path(ref.path).unlink()
            with self._lock:
                self._active.remove(parts)

    def _publish(self, ctx: Any) -> tuple[ContextFile, set[int]]:
        """``ctx`` pickled for the workers. The values of a dataclass context's fields (model,
        history, tables, configuration) are pickled once each into a part file the context refers
        to, which a worker loads once while the following maps' contexts hold the same object:
        the contexts of a night differ by what each global step adds."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        values = []
        if dataclasses.is_dataclass(ctx) and not isinstance(ctx, type):
            values = [getattr(ctx, f.name) for f in dataclasses.fields(ctx)]
        values = [v for v in values if v is not None and not isinstance(v, str | int | float | bool)]
        wanted = {id(v) for v in values}
        in_use = wanted.union(*self._active)
        for key in [k for k in self._parts if k not in in_use]:  # no map will name it again
            self._parts.pop(key)[0].unlink(missing_ok=True)
        for value in values:
            if id(value) not in self._parts:
                part = self._file(f"part-{os.getpid()}-{next(_files)}.pickle", value)
                self._parts[id(value)] = (part, value)  # held: its id stays its own
        shared = {k: self._parts[k][0].name for k in wanted}
        path = self._file(f"context-{os.getpid()}-{next(_files)}.pickle", ctx, shared)
        return ContextFile(str(path)), wanted

    def _file(self, name: str, obj: Any, shared: dict[int, str] | None = None) -> Path:
        path = self.work_dir / name
        # personal data (the history), loaded by pickle: only this account may read or plant it;
        # O_EXCL refuses a file (or a link) already there
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            pickler = pickle.Pickler(f, protocol=pickle.HIGHEST_PROTOCOL)
            if shared:
                pickler.persistent_id = lambda o: shared.get(id(o))  # type: ignore[method-assign]
            pickler.dump(obj)
        return path


def _timed(future: Future[tuple[R, float]]) -> R:
    result, cpu = future.result()
    with _task_cpu_lock:
        _task_cpu[0] += cpu
    return result


def in_process() -> Workers:
    """One worker: every task in this process."""
    return Workers(1, Path("."))


__all__ = ["Workers", "available_cores", "cpu_seconds", "in_process", "task_cpu_seconds", "worker_count"]
