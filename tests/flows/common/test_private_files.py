"""The data directory (0700), the record store's SQLite file with its WAL and shared-memory
files, and the report files (0600) are readable by the worker's own user only: they hold every
script's output. Whatever the umask, and also when an older version left them readable."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.changes import ChangeSpec
from flows.common.reporting import write_report
from flows.common.settings import get_settings
from flows.store import Store
from providers.base import Target


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask of a shell (022), under which files are world-readable by default."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_files_in_use(data_dir: Path) -> dict[str, int]:
    """The modes of the store's files while it is open, after a write (SQLite makes its WAL
    and -shm files then, and removes them when the last connection closes)."""
    change = ChangeSpec(
        change_number="CHG1",
        targets=[
            Target(instance_id="i-0123456789abcdef0", account_id="1" * 12, region="us-east-1")
        ],
    )
    with Store.default() as store:
        store.save_change(change)
        with store.engine.connect():
            return {p.name: mode(p) for p in data_dir.glob("cloudops.db*")}


def test_a_new_data_directory_store_and_report_are_private(data_dir: Path) -> None:
    in_use = store_files_in_use(data_dir)
    report = write_report(get_settings().reports_dir, "qc_results_CHG1.md", "# QC\n")

    assert mode(data_dir) == 0o700
    assert in_use == {
        "cloudops.db": 0o600,
        "cloudops.db-wal": 0o600,
        "cloudops.db-shm": 0o600,
    }
    assert mode(report.parent) == 0o700
    assert mode(report) == 0o600


def test_files_an_older_version_left_readable_are_tightened(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    with sqlite3.connect(data_dir / "cloudops.db") as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE leftover (x)")
    os.chmod(data_dir / "cloudops.db", 0o644)
    old_report = get_settings().reports_dir / "old.md"
    old_report.parent.mkdir(mode=0o755)
    old_report.write_text("old")
    os.chmod(old_report, 0o644)

    in_use = store_files_in_use(data_dir)
    write_report(old_report.parent, old_report.name, "# rewritten\n")

    assert mode(data_dir) == 0o700
    assert set(in_use) >= {"cloudops.db", "cloudops.db-wal"}
    assert set(in_use.values()) == {0o600}
    assert (mode(old_report.parent), mode(old_report)) == (0o700, 0o600)
    assert old_report.read_text() == "# rewritten\n"


def test_a_report_is_never_written_through_a_symbolic_link(data_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    reports = get_settings().reports_dir
    reports.mkdir(parents=True)
    (reports / "run_script_adhoc.md").symlink_to(victim)

    with pytest.raises(OSError):
        write_report(reports, "run_script_adhoc.md", "# report\n")

    assert victim.read_text() == "untouched"
