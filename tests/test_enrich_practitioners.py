"""The practitioner directory: formats, checks, case-insensitive matching."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector.enrich.practitioners import add_practitioner_columns, load_practitioners
from detector.errors import EnrichmentError, InputError
from detector.schema import C

EVENTS = pl.LazyFrame({C.ACCOUNT: ["dr.martin@example.fr", "Alice@Example.FR", "bob@example.fr", None]})


def write(tmp_path: Path, text: str, name: str = "dir.csv", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("account,profession,rpps\nDr.Martin@Example.fr,médecin,10001234567\n", "utf-8"),
        ("Account;Profession;RPPS\ndr.martin@example.fr;médecin;10001234567\n", "utf-8"),
        ("\ufeffaccount\tprofession\trpps\ndr.martin@example.fr\tmédecin\t10001234567\n", "utf-8"),
        ("account;profession;rpps\r\ndr.martin@example.fr;médecin;10001234567\r\n", "cp1252"),
        ('account,profession,rpps\n" DR.MARTIN@example.fr ","médecin", 10001234567 \n', "utf-8"),
    ],
)
def test_csv_variants(tmp_path: Path, text: str, encoding: str) -> None:
    frame = load_practitioners(write(tmp_path, text, encoding=encoding))
    assert frame.row(0, named=True) == {
        C.ACCOUNT: "dr.martin@example.fr",
        C.PROFESSION: "médecin",
        "rpps": "10001234567",
    }


def test_extra_columns_are_carried_and_optional_missing(tmp_path: Path) -> None:
    frame = load_practitioners(write(tmp_path, "account,organization\nalice@example.fr,CHU Lyon\n"))
    assert frame.columns == [C.ACCOUNT, "organization"]
    out = add_practitioner_columns(EVENTS, frame).collect()
    assert out[C.IS_PRACTITIONER].to_list() == [False, True, False, False]
    assert out[C.PROFESSION].to_list() == [None, None, None, None]


def test_matching_is_case_insensitive(tmp_path: Path) -> None:
    frame = load_practitioners(
        write(tmp_path, "account,profession\nALICE@example.fr,infirmier\nDr.Martin@example.fr,médecin\n")
    )
    out = add_practitioner_columns(EVENTS, frame).collect()
    assert out[C.IS_PRACTITIONER].to_list() == [True, True, False, False]
    assert out[C.PROFESSION].to_list() == ["médecin", "infirmier", None, None]
    assert out[C.ACCOUNT].to_list() == EVENTS.collect()[C.ACCOUNT].to_list()


def test_no_directory() -> None:
    out = add_practitioner_columns(EVENTS, None).collect()
    assert out[C.IS_PRACTITIONER].to_list() == [False] * 4
    assert out[C.PROFESSION].dtype == pl.String


def test_parquet_directory(tmp_path: Path) -> None:
    p = tmp_path / "dir.parquet"
    pl.DataFrame(
        {"Account": ["Alice@example.fr"], "profession": ["sage-femme"], "rpps": [10009876543]}
    ).write_parquet(p)
    frame = load_practitioners(p)
    assert frame.row(0) == ("alice@example.fr", "sage-femme", "10009876543")


def test_parquet_detected_by_magic(tmp_path: Path) -> None:
    p = tmp_path / "dir.data"
    pl.DataFrame({"account": ["a@x"]}).write_parquet(p)
    assert load_practitioners(p)[C.ACCOUNT].to_list() == ["a@x"]


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("acount,profession", "did you mean acount?"),
        ("email,profession", "rename column 'email' to 'account'"),
    ],
)
def test_missing_account_column(tmp_path: Path, header: str, hint: str) -> None:
    p = write(tmp_path, f"{header}\nalice@example.fr,médecin\n")
    with pytest.raises(EnrichmentError, match="no 'account' column") as e:
        load_practitioners(p)
    assert e.value.path == str(p)
    assert e.value.hint == hint


@pytest.mark.parametrize(
    ("rows", "line", "match"),
    [
        (["a@x,médecin,10001234567", "b@x,infirmier,1234"], 3, "'1234'"),
        (["a@x,médecin,1000123456A"], 2, "11-digit"),
        (["a@x,médecin,100012345678"], 2, "11-digit"),
        (["a@x,médecin,10001234567", ",infirmier,10001234568"], 3, "empty account"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path: Path, rows: list[str], line: int, match: str) -> None:
    p = write(tmp_path, "account,profession,rpps\n" + "\n".join(rows) + "\n")
    with pytest.raises(EnrichmentError, match=match) as e:
        load_practitioners(p)
    assert (e.value.path, e.value.line) == (str(p), line)
    assert f"{p}:{line}" in str(e.value)


def test_empty_rpps_is_allowed(tmp_path: Path) -> None:
    frame = load_practitioners(write(tmp_path, "account,profession,rpps\na@x,secrétaire,\n"))
    assert frame["rpps"].to_list() == [None]


def test_duplicates_first_wins_with_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    p = write(tmp_path, "account,profession\na@x,médecin\nA@X,infirmier\nb@x,opticien-lunetier\n")
    frame = load_practitioners(p, warnings=warnings)
    assert frame.rows() == [("a@x", "médecin"), ("b@x", "opticien-lunetier")]
    assert len(warnings) == 1 and "1 duplicate" in warnings[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_practitioners(tmp_path / "absent.csv")


def test_unreadable_csv(tmp_path: Path) -> None:
    p = write(tmp_path, 'account,profession\n"a@x,médecin\nb@x\n')
    with pytest.raises(EnrichmentError) as e:
        load_practitioners(p)
    assert e.value.path == str(p)
