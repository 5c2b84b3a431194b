"""One root exception type for everything the user can get wrong.

Every error knows where the bad input was (``path`` and, where there is one, ``line``) and may
carry a ``hint`` ("did you mean source_ip?"). The CLI turns any ``DetectorError`` into one line on
stderr and the exit code of its class; anything else is a bug and exits 1.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable
from pathlib import Path


class DetectorError(ValueError):
    """Root of every error caused by input, configuration or environment."""

    exit_code = 2
    step: str | None = None
    """The nightly job's step it stopped (``detector.pipeline.STEPS``; set by the pipeline)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.hint = hint

    @property
    def location(self) -> str | None:
        if self.path is None:
            return None
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return f"{text} ({self.hint})" if self.hint else text


class InputError(DetectorError):
    """A path that does not exist, an unreadable file, input with no recognisable line."""


class ParseError(DetectorError):
    """A line or a tabular file that cannot be turned into events."""


class SchemaError(DetectorError):
    """A frame or a file whose columns or types are not the documented ones."""


class ConfigError(DetectorError):
    """A configuration file or option with an unknown key or a bad value."""


class EnrichmentError(DetectorError):
    """A GeoIP database or practitioner directory that exists but cannot be used."""


class ModelError(DetectorError):
    """A model file that is missing, tampered with, or made by incompatible versions."""


class StateError(DetectorError):
    """A state directory that is corrupt or of an incompatible version."""


class OutputError(DetectorError):
    """An output or state directory that cannot be written (read-only, full, a file in the way)."""


class RunFailed(DetectorError):
    """The run could not finish (nothing was published)."""

    exit_code = 1


UNWRITABLE = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.ENOTDIR,
        errno.EEXIST,
    }
)
"""errno values of an output that cannot be written (read-only, full, a file where a directory goes)."""


def unwritable(e: BaseException, where: str | Path | None = None) -> OutputError | None:
    """``e`` as an :class:`OutputError` naming the path (its own, else ``where``) if it says an output
    cannot be written; ``None`` for any other error."""
    if not isinstance(e, OSError):
        return None
    # pyarrow's and polars' I/O errors carry the system's message but no errno
    code = (
        e.errno if e.errno in UNWRITABLE else next((c for c in UNWRITABLE if os.strerror(c) in str(e)), None)
    )
    if code is None:
        return None
    why = os.strerror(code)
    if code in (errno.EEXIST, errno.ENOTDIR):
        why = f"a file stands where a directory is needed ({why})"
    return OutputError(f"cannot write: {why}", path=e.filename or where)


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest valid choice, or ``None``."""
    match = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {match[0]}?" if match else None
