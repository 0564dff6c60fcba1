"""load_change_input: the CSV text itself, or a CSV file in the changes directory
(``CLOUDOPS_CHANGES_DIR``, default ``<data dir>/changes``), and no other file of the worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.changes import MAX_CHANGE_FILE_BYTES, ChangeFileError, load_change_input
from flows.common.settings import get_settings
from tests.flows.changes.conftest import OLD_TOOL_LAYOUT_A

WHERE_CHANGE_FILES_GO = "change files go in the changes directory"


@pytest.fixture
def changes_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty changes directory, set as ``CLOUDOPS_CHANGES_DIR``."""
    path = tmp_path / "changes"
    path.mkdir()
    monkeypatch.setenv("CLOUDOPS_CHANGES_DIR", str(path))
    return path


def test_a_file_named_in_the_changes_directory_is_read(changes_dir, two_instance_change):
    path = changes_dir / "CHG0012345.csv"
    path.write_bytes(b"\xef\xbb\xbf" + OLD_TOOL_LAYOUT_A.replace("\n", "\r\n").encode())

    assert load_change_input("CHG0012345.csv") == two_instance_change
    assert load_change_input(str(path)) == two_instance_change


def test_a_file_in_a_folder_of_the_changes_directory_is_read(changes_dir, two_instance_change):
    (changes_dir / "2026" / "Q1").mkdir(parents=True)
    (changes_dir / "2026" / "Q1" / "change, final.csv").write_text(OLD_TOOL_LAYOUT_A)

    assert load_change_input("2026/Q1/change, final.csv") == two_instance_change


def test_the_changes_directory_defaults_to_the_data_directory(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, two_instance_change
):
    monkeypatch.delenv("CLOUDOPS_CHANGES_DIR", raising=False)
    (data_dir / "changes").mkdir(parents=True)
    (data_dir / "changes" / "CHG0012345.csv").write_text(OLD_TOOL_LAYOUT_A)

    assert get_settings().changes_dir == data_dir / "changes"
    assert load_change_input("CHG0012345.csv") == two_instance_change


def test_csv_text_is_read(changes_dir, two_instance_change):
    assert load_change_input(OLD_TOOL_LAYOUT_A) == two_instance_change


@pytest.mark.parametrize(
    "value",
    ["/proc/self/mem", "/etc/passwd", "../outside.csv", "~/outside.csv", "sub/../../outside.csv"],
)
def test_a_path_outside_the_changes_directory_is_refused_unread(changes_dir, value):
    (changes_dir.parent / "outside.csv").write_text(OLD_TOOL_LAYOUT_A)
    (changes_dir / "sub").mkdir()

    with pytest.raises(ChangeFileError) as refused:
        load_change_input(value)

    message = str(refused.value)
    assert "is outside the changes directory" in message
    assert WHERE_CHANGE_FILES_GO in message and str(changes_dir) in message
    assert "CLOUDOPS_CHANGES_DIR" in message


def test_a_symbolic_link_out_of_the_changes_directory_is_refused(changes_dir):
    secret = changes_dir.parent / "worker-secret.txt"
    secret.write_text("change_number,instance_id\nCHG1,i-0123456789abcdef0\n")
    (changes_dir / "innocent.csv").symlink_to(secret)

    with pytest.raises(ChangeFileError, match="is outside the changes directory"):
        load_change_input("innocent.csv")


def test_a_link_inside_the_changes_directory_is_followed(changes_dir, two_instance_change):
    (changes_dir / "CHG0012345.csv").write_text(OLD_TOOL_LAYOUT_A)
    (changes_dir / "latest.csv").symlink_to(changes_dir / "CHG0012345.csv")

    assert load_change_input("latest.csv") == two_instance_change


def test_a_missing_file_is_named_with_where_change_files_go(changes_dir):
    with pytest.raises(ChangeFileError, match=r"no change file 'CHG1\.csv'") as refused:
        load_change_input("CHG1.csv")
    assert WHERE_CHANGE_FILES_GO in str(refused.value)


def test_a_missing_changes_directory_says_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDOPS_CHANGES_DIR", str(tmp_path / "nowhere"))

    with pytest.raises(ChangeFileError, match="does not exist: create it"):
        load_change_input("CHG1.csv")


@pytest.mark.parametrize("value", ["", "   "])
def test_nothing_given_is_refused(changes_dir, value):
    with pytest.raises(ChangeFileError, match="no change given"):
        load_change_input(value)


def test_a_directory_or_a_fifo_is_refused(changes_dir):
    (changes_dir / "folder.csv").mkdir()
    os.mkfifo(changes_dir / "pipe.csv")

    with pytest.raises(ChangeFileError, match="is a directory"):
        load_change_input("folder.csv")
    with pytest.raises(ChangeFileError, match="is not a regular file"):
        load_change_input("pipe.csv")


def test_a_file_past_the_size_limit_is_refused_unread(changes_dir):
    with (changes_dir / "huge.csv").open("wb") as file:
        file.truncate(MAX_CHANGE_FILE_BYTES + 1)

    with pytest.raises(ChangeFileError, match="at most 5,242,880 bytes"):
        load_change_input("huge.csv")


def test_a_file_in_a_legacy_encoding_is_refused_with_the_fix(changes_dir):
    (changes_dir / "change.csv").write_bytes(
        "change_number,instance_id,account_id,region,name\nCHG1,i-1,1,x,Café\n".encode("cp1252")
    )
    with pytest.raises(ChangeFileError, match="'CSV UTF-8'"):
        load_change_input("change.csv")
