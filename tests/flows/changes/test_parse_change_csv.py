"""parse_change_csv: forgiving about form, strict about content, every problem at once."""

from __future__ import annotations

import pytest

from flows.changes import (
    ChangeFileError,
    ChangeFileProblem,
    ChangeSpec,
    parse_change_csv,
    validate_change_number,
)
from providers.base import Platform
from tests.flows.changes.conftest import OLD_TOOL_LAYOUT_A, OLD_TOOL_LAYOUT_B

ROWS = [
    ("CHG0012345", "i-0123456789abcdef0", "012345678901", "us-east-1", "linux"),
    ("CHG0012345", "i-0fedcba9876543210", "123456789012", "us-gov-west-1", "windows"),
]


def _csv(header: list[str], rows: list[tuple[str, ...]], newline: str = "\n") -> str:
    return newline.join([",".join(header), *(",".join(row) for row in rows)]) + newline


@pytest.mark.parametrize(
    "header",
    [
        ["change_number", "instance_id", "account_id", "region", "platform"],
        ["ChangeNumber", "InstanceID", "AccountID", "Region", "Platform"],
        ["Change Number", "Instance ID", "Account ID", "REGION", "PLATFORM"],
        ["Change_number", "Instance_Id", "Account_ID", "region", "platform"],
        [" change number ", "instance id", "account id", " Region", "platform "],
    ],
)
def test_every_header_spelling_reads_the_same_change(header, two_instance_change):
    assert parse_change_csv(_csv(header, ROWS)) == two_instance_change


def test_bom_and_windows_line_endings_read_the_same_change(two_instance_change):
    header = ["change_number", "instance_id", "account_id", "region", "platform"]
    text = _csv(header, ROWS, newline="\r\n")
    assert parse_change_csv("\ufeff" + text) == two_instance_change
    assert parse_change_csv(("\ufeff" + text).encode("utf-8")) == two_instance_change
    assert parse_change_csv(text.encode("utf-8")) == two_instance_change


@pytest.mark.parametrize("layout", [OLD_TOOL_LAYOUT_A, OLD_TOOL_LAYOUT_B])
def test_both_layouts_of_the_old_tool_parse(layout, two_instance_change):
    assert parse_change_csv(layout) == two_instance_change


def test_five_bad_rows_are_reported_together_with_their_row_numbers():
    text = (
        "change_number,instance_id,account_id,region\n"
        "CHG1,i-0123456789abcdef0,111111111111,us-east-1\n"  # row 2: fine
        "CHG1,i-12345,111111111111,us-east-1\n"  # row 3: bad instance id
        "CHG1,i-0123456789abcdef1,12345678901,us-east-1\n"  # row 4: 11-digit account
        "CHG1,i-0123456789abcdef2,111111111111,us-east-9\n"  # row 5: unknown region
        "CHG 1,i-0123456789abcdef3,111111111111,us-east-1\n"  # row 6: bad change number
        "CHG1,i-0123456789abcdef0,222222222222,us-east-1\n"  # row 7: conflicts with row 2
    )
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv(text)
    problems = caught.value.problems
    assert [(p.row, p.column) for p in problems] == [
        (3, "instance_id"),
        (4, "account_id"),
        (5, "region"),
        (6, "change_number"),
        (7, "instance_id"),
    ]
    message = str(caught.value)
    assert "5 problems" in message
    assert "the header is row 1, the first data row is row 2" in message
    assert (
        "row 4, account_id: '12345678901' has 11 digits; account ids have 12 — a spreadsheet "
        "may have dropped a leading zero (did you mean '012345678901'?)"
    ) in message.splitlines()
    assert "row 7, instance_id: i-0123456789abcdef0 is also in row 2" in message
    assert "'111111111111' there, '222222222222' here" in message


@pytest.mark.parametrize(
    ("cell", "column", "expected"),
    [
        ("i-0123", "instance_id", "has 4 hex digits after 'i-'; instance ids have 8 or 17"),
        ("server01", "instance_id", "is not an instance id"),
        ("", "instance_id", "missing instance id"),
        ("1.23457E+11", "account_id", "scientific notation"),
        ("1234-5678-9012", "account_id", "12 digits only ('123456789012')"),
        ("1234567890123", "account_id", "is not an account id"),
        ("us-est-1", "region", "did you mean 'us-west-1' or 'us-east-1'?"),
        ("mars-north-1", "region", "unknown region 'mars-north-1'"),
        ("solaris", "platform", "unknown platform 'solaris'; use linux or windows"),
        ("x" * 256, "name", "256 characters long; at most 255"),
    ],
)
def test_each_kind_of_bad_cell_says_what_to_do(cell, column, expected):
    row = {
        "change_number": "CHG1",
        "instance_id": "i-0123456789abcdef0",
        "account_id": "123456789012",
        "region": "us-east-1",
        "platform": "linux",
        "name": "web01",
    }
    row[column] = cell
    text = ",".join(row) + "\n" + ",".join(row.values()) + "\n"
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv(text)
    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (2, column)
    assert expected in problem.message


def test_two_change_numbers_in_one_file_are_refused():
    text = (
        "change_number,instance_id,account_id,region\n"
        "CHG1,i-0123456789abcdef0,111111111111,us-east-1\n"
        "CHG2,i-0123456789abcdef1,111111111111,us-east-1\n"
        "CHG2,i-0123456789abcdef2,111111111111,us-east-1\n"
    )
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv(text)
    assert caught.value.problems == [
        ChangeFileProblem(
            3,
            "change_number",
            "'CHG2' (2 rows) differs from 'CHG1' of row 2; one file holds one change — split "
            "it into one file per change",
        )
    ]


def test_exact_duplicate_rows_merge_with_a_warning():
    text = (
        "change_number,instance_id,account_id,region,name\n"
        "CHG1,i-0123456789abcdef0,111111111111,us-east-1,web01\n"
        "CHG1,I-0123456789ABCDEF0, 111111111111 ,US-EAST-1,web01\n"
    )
    spec = parse_change_csv(text)
    assert [t.instance_id for t in spec.targets] == ["i-0123456789abcdef0"]
    assert spec.warnings == ["row 3 repeats row 2 (i-0123456789abcdef0); merged into one"]


def test_same_instance_with_another_platform_is_a_conflict():
    text = (
        "change_number,instance_id,account_id,region,platform\n"
        "CHG1,i-0123456789abcdef0,111111111111,us-east-1,linux\n"
        "CHG1,i-0123456789abcdef0,111111111111,us-east-1,windows\n"
    )
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv(text)
    assert "platform 'linux' there, 'windows' here" in caught.value.problems[0].message


def test_missing_columns_are_named_with_the_spellings_accepted():
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv("Change Number,Instance ID\nCHG1,i-0123456789abcdef0\n")
    assert [(p.row, p.column) for p in caught.value.problems] == [
        (1, "account_id"),
        (1, "region"),
    ]
    assert "account_id, AccountID, Account ID" in caught.value.problems[0].message


def test_a_semicolon_file_is_recognised_as_such():
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv("change_number;instance_id;account_id;region\nCHG1;i-01234567;1;x\n")
    assert "separated by ';'" in str(caught.value)


def test_optional_columns_default_and_unknown_columns_are_ignored_with_a_warning():
    text = (
        "Owner,Change Number,Instance ID,Account ID,Region,,\n"
        "ops,CHG1,i-0123456789abcdef0,111111111111,us-east-1,,\n"
        ",,,,,,\n"
        "\n"
    )
    spec = parse_change_csv(text)
    (target,) = spec.targets
    assert target.platform is Platform.LINUX
    assert target.name is None
    assert spec.warnings == ["column 'Owner' is not used and was ignored"]


def test_row_numbers_follow_the_spreadsheet_when_blank_rows_come_first():
    text = "\n\nchange_number,instance_id,account_id,region\nCHG1,i-1,111111111111,us-east-1\n"
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv(text)
    assert caught.value.problems[0].row == 4
    assert "the header is row 3" in str(caught.value)


def test_a_value_with_an_unquoted_comma_is_pointed_out():
    text = (
        "change_number,instance_id,account_id,region,name\n"
        "CHG1,i-0123456789abcdef0,111111111111,us-east-1,web, primary\n"
    )
    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv(text)
    assert "unquoted comma" in caught.value.problems[0].message
    quoted = text.replace("web, primary", '"web, primary"')
    assert parse_change_csv(quoted).targets[0].name == "web, primary"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("\n \n,,\n", "the file is empty"),
        ("change_number,instance_id,account_id,region\n", "no instance rows"),
        ("change_number,region\nCHG1," + "x" * 200_000 + "\n", "row 2: cannot be read as CSV"),
    ],
)
def test_files_without_instances_are_refused(text, expected):
    with pytest.raises(ChangeFileError, match=expected):
        parse_change_csv(text)


def test_a_file_that_is_not_utf8_names_the_fix():
    data = "change_number,instance_id,account_id,region,name\nCHG1,i-1,1,x,Café\n"
    with pytest.raises(ChangeFileError, match="save it from the spreadsheet as 'CSV UTF-8'"):
        parse_change_csv(data.encode("cp1252"))


@pytest.mark.parametrize("value", ["CHG0012345", "chg-1_2", "A" * 50, " CHG1 "])
def test_valid_change_numbers(value):
    assert validate_change_number(value) == value.strip()


@pytest.mark.parametrize("value", ["", "   ", "CHG 1", "CHG#1", "A" * 51, "CHG1\n"[:-1] + "\n1"])
def test_invalid_change_numbers(value):
    with pytest.raises(ValueError):
        validate_change_number(value)


def test_a_change_spec_refuses_an_instance_twice(two_instance_change):
    with pytest.raises(ValueError, match="more than once: i-0123456789abcdef0"):
        ChangeSpec(
            change_number="CHG1",
            targets=[two_instance_change.targets[0], two_instance_change.targets[0]],
        )


@pytest.mark.parametrize(
    ("region", "partition"),
    [("cn-north-1", "aws-cn"), ("us-iso-east-1", "aws-iso"), ("us-isob-east-1", "aws-iso-b")],
)
def test_a_region_of_a_partition_the_flows_do_not_serve_is_named_as_such(region, partition):
    text = "change_number,instance_id,account_id,region\n"
    text += f"CHG1,i-0123456789abcdef0,111111111111,{region}\n"

    with pytest.raises(ChangeFileError) as caught:
        parse_change_csv(text)

    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (2, "region")
    assert f"(partition {partition})" in problem.message and "do not serve" in problem.message
