"""load_change_input: a path to a CSV file, or the CSV text itself."""

from __future__ import annotations

import pytest

from flows.changes import ChangeFileError, load_change_input
from tests.flows.changes.conftest import OLD_TOOL_LAYOUT_A


def test_a_path_to_a_file_with_bom_and_crlf_is_read(tmp_path, two_instance_change):
    path = tmp_path / "CHG0012345.csv"
    path.write_bytes(b"\xef\xbb\xbf" + OLD_TOOL_LAYOUT_A.replace("\n", "\r\n").encode())
    assert load_change_input(str(path)) == two_instance_change


def test_a_path_with_a_comma_in_its_name_is_still_a_path(tmp_path, two_instance_change):
    path = tmp_path / "change, final.csv"
    path.write_text(OLD_TOOL_LAYOUT_A, encoding="utf-8")
    assert load_change_input(str(path)) == two_instance_change


def test_csv_text_is_read(two_instance_change):
    assert load_change_input(OLD_TOOL_LAYOUT_A) == two_instance_change


def test_a_missing_file_is_named_in_the_error(tmp_path):
    missing = tmp_path / "nowhere" / "CHG1.csv"
    with pytest.raises(ChangeFileError, match="no change file at") as caught:
        load_change_input(str(missing))
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize("value", ["", "   "])
def test_nothing_given_is_refused(value):
    with pytest.raises(ChangeFileError, match="no change given"):
        load_change_input(value)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ChangeFileError, match="is a directory"):
        load_change_input(str(tmp_path))


def test_a_file_in_a_legacy_encoding_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "change.csv"
    path.write_bytes(
        "change_number,instance_id,account_id,region,name\nCHG1,i-1,1,x,Café\n".encode("cp1252")
    )
    with pytest.raises(ChangeFileError, match="'CSV UTF-8'"):
        load_change_input(str(path))
