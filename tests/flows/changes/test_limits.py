"""The limits of one change file (README, "Changes and the record store"): at most
``MAX_CHANGE_FILE_BYTES`` and ``MAX_CHANGE_ROWS`` instance rows, and a refusal that lists the
first ``MAX_PROBLEMS_LISTED`` problems and counts the rest, so that a runaway export is
refused in a moment with a message a person can read."""

from __future__ import annotations

import pytest

from flows.changes import (
    MAX_CHANGE_FILE_BYTES,
    MAX_CHANGE_ROWS,
    MAX_PROBLEMS_LISTED,
    ChangeFileError,
    parse_change_csv,
)

HEADER = "change_number,instance_id,account_id,region\n"


def good_rows(count: int) -> str:
    return "".join(f"CHG1,i-{n:017x},111111111111,us-east-1\n" for n in range(count))


def bad_rows(count: int) -> str:
    """Rows with three bad cells each: instance id, account id (11 digits) and region."""
    return "".join(f"CHG1,i-{n:05x},11111111111,us-nowhere-1\n" for n in range(count))


def test_the_row_limit_is_accepted() -> None:
    spec = parse_change_csv(HEADER + good_rows(MAX_CHANGE_ROWS))

    assert len(spec.targets) == MAX_CHANGE_ROWS


def test_one_row_past_the_limit_refuses_the_file_naming_the_limit() -> None:
    with pytest.raises(ChangeFileError) as refused:
        parse_change_csv(HEADER + good_rows(MAX_CHANGE_ROWS + 1))

    (problem,) = refused.value.problems
    assert problem.row == MAX_CHANGE_ROWS + 2  # the header is row 1
    assert f"more than {MAX_CHANGE_ROWS:,} instance rows" in problem.message
    assert "split it" in problem.message


@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_file_past_the_size_limit_is_refused_before_it_is_read(as_bytes: bool) -> None:
    text = HEADER + "\n" * MAX_CHANGE_FILE_BYTES + good_rows(1)

    with pytest.raises(ChangeFileError) as refused:
        parse_change_csv(text.encode() if as_bytes else text)

    message = str(refused.value)
    assert f"at most {MAX_CHANGE_FILE_BYTES:,} bytes (5 MB)" in message
    assert len(message) < 400


def test_many_bad_rows_list_the_first_problems_and_count_the_rest() -> None:
    with pytest.raises(ChangeFileError) as refused:
        parse_change_csv(HEADER + bad_rows(1_000))

    error = refused.value
    lines = str(error).splitlines()
    assert error.problem_count == 3_000
    assert len(error.problems) == MAX_PROBLEMS_LISTED
    assert lines[0].startswith("Change file rejected (3000 problems;")
    assert [line.split(",")[0] for line in lines[1:4]] == ["row 2", "row 2", "row 2"]
    assert len(lines) == 1 + MAX_PROBLEMS_LISTED + 1
    assert lines[-1].startswith("... and 2900 more problems not listed")
    assert len(str(error)) < 20_000
