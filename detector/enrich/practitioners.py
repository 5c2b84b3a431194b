"""The practitioner directory: which accounts belong to health professionals, and which profession.

A CSV (``,``, ``;``, tab or ``|`` separated, UTF-8 or Windows-1252) or Parquet file with an
``account`` column; every other column (``profession``, ``rpps``, ``organization``, ...) is
optional and carried as is. Accounts are matched case-insensitively.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from detector.errors import EnrichmentError, InputError, did_you_mean
from detector.schema import C

RPPS = "rpps"
_SEPARATORS = (",", ";", "\t", "|")
_ACCOUNT_SYNONYMS = (
    "email",
    "mail",
    "e-mail",
    "login",
    "user",
    "username",
    "compte",
    "identifiant",
    "courriel",
)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _read_csv(path: Path) -> pl.DataFrame:
    text = _decode(path.read_bytes())
    header = text.split("\n", 1)[0]
    separator = max(_SEPARATORS, key=header.count)
    try:
        return pl.read_csv(text.encode(), separator=separator, infer_schema=False, quote_char='"')
    except (pl.exceptions.PolarsError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EnrichmentError(f"cannot read the practitioner directory as CSV: {first}", path=path) from e


def _read(path: Path) -> tuple[pl.DataFrame, int]:
    """The raw frame and the line number of its first data row."""
    if not path.exists():
        raise InputError("practitioner directory not found", path=path)
    if path.is_dir():
        raise InputError("practitioner directory is a directory, expected a CSV or Parquet file", path=path)
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pl.read_parquet(path), 1
        except (pl.exceptions.PolarsError, OSError, ValueError) as e:
            raise EnrichmentError(f"cannot read the practitioner directory as Parquet: {e}", path=path) from e
    return _read_csv(path), 2


def normalise(frame: pl.DataFrame, *, source: str | Path | None = None, first_line: int = 1) -> pl.DataFrame:
    """Check and tidy a directory frame: lower-case column names and accounts, 11-digit rpps.

    Args:
        frame: The directory as read.
        source: Where it came from, for error messages.
        first_line: Line number of the first row (2 for a CSV with a header).

    Raises:
        EnrichmentError: no ``account`` column, an empty account, or an rpps that is not 11 digits.
    """
    names = [str(c).strip().lower() for c in frame.columns]
    if len(set(names)) != len(names):
        raise EnrichmentError("practitioner directory has duplicate column names", path=source)
    frame = frame.rename(dict(zip(frame.columns, names, strict=True)))
    if C.ACCOUNT not in names:
        synonym = next((n for n in names if n in _ACCOUNT_SYNONYMS), None)
        hint = f"rename column {synonym!r} to 'account'" if synonym else did_you_mean(C.ACCOUNT, names)
        raise EnrichmentError(
            f"practitioner directory has no 'account' column (columns: {', '.join(names) or 'none'})",
            path=source,
            hint=hint,
        )
    text_cols = [c for c in names if frame.schema[c] == pl.String]
    frame = frame.with_columns(
        [pl.col(c).str.strip_chars().replace("", None) for c in text_cols if c != C.ACCOUNT]
    ).with_columns(pl.col(C.ACCOUNT).cast(pl.String).str.strip_chars().str.to_lowercase())
    if RPPS in names:
        frame = frame.with_columns(pl.col(RPPS).cast(pl.String).str.strip_chars().replace("", None))
    indexed = frame.with_row_index("_row")
    bad_account = indexed.filter(pl.col(C.ACCOUNT).is_null() | (pl.col(C.ACCOUNT) == "")).head(1)
    if bad_account.height:
        raise EnrichmentError(
            "practitioner directory row has an empty account",
            path=source,
            line=int(bad_account["_row"][0]) + first_line,
        )
    if RPPS in names:
        bad = indexed.filter(pl.col(RPPS).is_not_null() & ~pl.col(RPPS).str.contains(r"^\d{11}$")).head(1)
        if bad.height:
            raise EnrichmentError(
                f"rpps {bad[RPPS][0]!r} of account {bad[C.ACCOUNT][0]!r} is not an 11-digit RPPS number",
                path=source,
                line=int(bad["_row"][0]) + first_line,
            )
    return frame


def load_practitioners(path: str | Path, *, warnings: list[str] | None = None) -> pl.DataFrame:
    """Read and check the directory at ``path``; one row per account (the first entry wins).

    Args:
        path: CSV or Parquet file.
        warnings: If given, a note is appended when accounts are listed more than once.

    Raises:
        InputError: the file does not exist.
        EnrichmentError: the file cannot be read, or a row is malformed (the error names the line).
    """
    p = Path(path)
    raw, first_line = _read(p)
    frame = normalise(raw, source=p, first_line=first_line)
    unique = frame.unique(C.ACCOUNT, keep="first", maintain_order=True)
    if unique.height != frame.height and warnings is not None:
        warnings.append(
            f"{p}: {frame.height - unique.height} duplicate account entries in the practitioner directory; "
            "the first entry of each account is used"
        )
    return unique


def add_practitioner_columns(events: pl.LazyFrame, directory: pl.DataFrame | None) -> pl.LazyFrame:
    """Add ``is_practitioner`` (false without a directory) and ``profession``."""
    if directory is None:
        return events.with_columns(
            pl.lit(False).alias(C.IS_PRACTITIONER), pl.lit(None, pl.String).alias(C.PROFESSION)
        )
    profession = (
        pl.col(C.PROFESSION).cast(pl.String) if C.PROFESSION in directory.columns else pl.lit(None, pl.String)
    )
    table = (
        directory.lazy()
        .select(
            pl.col(C.ACCOUNT).str.to_lowercase().alias("_practitioner"),
            pl.lit(True).alias(C.IS_PRACTITIONER),
            profession.alias(C.PROFESSION),
        )
        .unique("_practitioner", keep="first", maintain_order=True)
    )
    return (
        events.with_columns(pl.col(C.ACCOUNT).str.to_lowercase().alias("_practitioner"))
        .join(table, on="_practitioner", how="left", maintain_order="left")
        .with_columns(pl.col(C.IS_PRACTITIONER).fill_null(False))
        .drop("_practitioner")
    )
