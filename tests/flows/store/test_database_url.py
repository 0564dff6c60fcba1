"""A bad ``DATABASE_URL`` gives one ``StoreError`` that names the setting and what to fix,
and never the password, not even a piece of it; a NUL in a change is refused at intake, with
its row, before any database sees it."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from flows.changes import ChangeFileError, parse_change_csv
from flows.store import Store
from flows.store.__main__ import main as store_command
from flows.store.database import StoreError

PASSWORD = "Sup3r-Secret-Tail99"
# Pieces of the password a careless message shows: its tail after a misread '@', its start.
PASSWORD_PIECES = (PASSWORD, "Tail99", "Secret-Tail", "Sup3r")


def refusal(url: str, monkeypatch: pytest.MonkeyPatch) -> StoreError:
    """The error of the default store's first use with ``DATABASE_URL=url``."""
    monkeypatch.setenv("DATABASE_URL", url)
    store = Store.default()
    with pytest.raises(StoreError) as refused:
        store.load_change("CHG1")
    assert PASSWORD not in repr(store)
    return refused.value


def assert_clear_and_secret_free(error: StoreError, *hints: str) -> None:
    message = str(error)
    assert "DATABASE_URL" in message
    for hint in hints:
        assert hint in message, message
    # Not in the message, nor in anything a traceback would print after it.
    printed = "".join(traceback.format_exception(error))
    for piece in PASSWORD_PIECES:
        assert piece not in printed, printed


@pytest.mark.parametrize(
    ("url", "hints"),
    [
        (f"postgresql://ops:{PASSWORD}@db.example:54x2/cloudops", ["port", "number"]),
        (f"postgresql://ops:{PASSWORD}@127.0.0.1:99999/cloudops", ["port"]),
        (f"mysql://ops:{PASSWORD}@db.example/cloudops", ["driver", "not installed"]),
        (f"oracle+nosuch://ops:{PASSWORD}@db.example/cloudops", ["no SQLAlchemy dialect"]),
        (f"postgresql+asyncpg://ops:{PASSWORD}@db.example/cloudops", ["asynchronous", "psycopg"]),
        ("postgresql://ops:Sup3r-Secret@Tail99@db.example/cloudops", ["'@'", "%40"]),
        ("not a database url", ["not a database URL"]),
        (f"postgresql://ops:{PASSWORD}@127.0.0.1:1/cloudops", ["reachable"]),
    ],
    ids=[
        "port-not-a-number",
        "port-too-big",
        "mysql-no-driver",
        "unknown-dialect",
        "asyncpg",
        "unencoded-at",
        "garbage",
        "nothing-listening",
    ],
)
def test_a_bad_url_is_one_clear_store_error_without_the_password(
    url: str, hints: list[str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_clear_and_secret_free(refusal(url, monkeypatch), *hints)


def test_a_sqlite_file_in_a_missing_directory_says_to_create_it(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "deeper"

    error = refusal(f"sqlite:///{missing / 'cloudops.db'}", monkeypatch)

    assert_clear_and_secret_free(error, str(missing), "does not exist", "create it")
    assert not missing.exists()


def test_a_corrupt_sqlite_file_says_what_it_is_and_what_to_do(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt = tmp_path / "cloudops.db"
    corrupt.write_bytes(b"this is a spreadsheet, not a database" * 200)

    error = refusal(f"sqlite:///{corrupt}", monkeypatch)

    assert_clear_and_secret_free(error, str(corrupt), "not a SQLite database", "move it aside")
    assert corrupt.read_bytes().startswith(b"this is a spreadsheet")


def test_the_store_command_reports_a_bad_url_in_one_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://ops:Sup3r-Secret@Tail99@db.example/x")

    assert store_command(["current"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: ") and "DATABASE_URL" in err
    assert not any(piece in err for piece in PASSWORD_PIECES)


@pytest.mark.parametrize("column", ["name", "region", "account_id", "instance_id"])
def test_a_nul_in_a_change_field_is_refused_at_intake_with_its_row(column: str) -> None:
    row = {
        "change_number": "CHG1",
        "instance_id": "i-0123456789abcdef0",
        "account_id": "111111111111",
        "region": "us-east-1",
        "name": "web01",
    }
    row[column] = row[column][:3] + "\0" + row[column][3:]
    text = ",".join(row) + "\n" + ",".join(row.values()) + "\n"

    with pytest.raises(ChangeFileError) as refused:
        parse_change_csv(text)

    assert [(p.row, p.column) for p in refused.value.problems] == [(2, column)]
    assert "NUL" in refused.value.problems[0].message
