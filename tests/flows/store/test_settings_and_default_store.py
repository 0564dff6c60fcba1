"""Settings come from the environment (or .env) on every call; the default store is a SQLite
file in WAL mode inside the data directory, created only when first used."""

from __future__ import annotations

import pickle
from pathlib import Path

from sqlalchemy import text

from flows.common.reporting import write_report
from flows.common.settings import Settings, get_settings
from flows.store import Store


def test_defaults_follow_the_data_directory(data_dir: Path):
    settings = get_settings()
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'cloudops.db'}"
    assert settings.reports_dir == data_dir / "reports"
    assert settings.max_concurrent_groups == 8
    assert not data_dir.exists()  # nothing is created by reading settings


def test_the_environment_is_read_on_every_call(data_dir: Path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://ops:pw@db:5432/cloudops")
    monkeypatch.setenv("CLOUDOPS_REPORTS_DIR", str(data_dir / "elsewhere"))
    monkeypatch.setenv("CLOUDOPS_MAX_CONCURRENT_GROUPS", "3")
    settings = get_settings()
    assert settings.database_url == "postgresql+psycopg://ops:pw@db:5432/cloudops"
    assert settings.reports_dir == data_dir / "elsewhere"
    assert settings.max_concurrent_groups == 3
    assert "pw" not in repr(settings)
    monkeypatch.delenv("DATABASE_URL")
    assert get_settings().database_url.startswith("sqlite:///")


def test_a_dotenv_file_is_read(data_dir: Path, tmp_path: Path, monkeypatch):
    (tmp_path / ".env").write_text("CLOUDOPS_MAX_CONCURRENT_GROUPS=5\n")
    monkeypatch.chdir(tmp_path)
    assert get_settings().max_concurrent_groups == 5


def test_the_home_directory_is_expanded(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings(data_dir="~/ops").data_dir == tmp_path / "ops"


def test_the_reports_directory_is_created_when_a_report_is_written(data_dir: Path):
    reports = get_settings().reports_dir
    assert reports == data_dir / "reports" and not reports.exists()
    written = write_report(reports, "r.md", "# r\n")
    assert written.read_text() == "# r\n" and reports.is_dir()


def test_the_default_store_is_a_sqlite_file_in_wal_mode(data_dir: Path):
    with Store.default() as store:
        assert store.load_change("CHG1") is None
        with store.engine.connect() as connection:
            assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert connection.scalar(text("PRAGMA foreign_keys")) == 1
    assert (data_dir / "cloudops.db").is_file()


def test_a_store_travels_as_its_url(data_dir: Path):
    with Store.default() as store:
        store.load_change("CHG1")
        copy = pickle.loads(pickle.dumps(store))
    assert copy.url == store.url
    assert copy.load_change("CHG1") is None
    copy.close()
