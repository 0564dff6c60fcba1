"""Change intake: a change number and its target instances, read from a CSV file or text.

The CSV comes from spreadsheets, so the reader is forgiving about form (header spelling,
byte-order mark, Windows line endings, stray spaces) and strict about content: every bad
cell is reported at once, with the row number a spreadsheet user sees, and nothing is
returned (so nothing is stored or run) while any row is bad.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Sized
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, Field, field_validator, model_validator

from flows.common.settings import get_settings
from providers.base import Platform, Target
from providers.partitions import PARTITIONS, foreign_partition, is_known_region

_CHANGE_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,50}")
_INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# Excel shows long numbers as 1.23457E+11 once a column is not formatted as text.
_SCIENTIFIC = re.compile(r"[0-9](?:[.,][0-9]+)?[eE][+]?[0-9]+")
_NAME_MAX = 255
_SHOWN_MAX = 40

# Limits of one change file (documented in the README). A change names at most this many
# instances; a file past them is refused before its rows are checked, so a runaway export
# costs a second, not minutes and gigabytes.
MAX_CHANGE_FILE_BYTES = 5 * 1024 * 1024
MAX_CHANGE_ROWS = 10_000
# The refusal lists this many problems and counts the rest: it becomes the failed run's
# state message in Prefect, which a person reads.
MAX_PROBLEMS_LISTED = 100

CHANGE_NUMBER = "change_number"
INSTANCE_ID = "instance_id"
ACCOUNT_ID = "account_id"
REGION = "region"
PLATFORM = "platform"
NAME = "name"

REQUIRED_COLUMNS = (CHANGE_NUMBER, INSTANCE_ID, ACCOUNT_ID, REGION)
OPTIONAL_COLUMNS = (PLATFORM, NAME)
_SPELLINGS = {
    CHANGE_NUMBER: "change_number, ChangeNumber, Change Number",
    INSTANCE_ID: "instance_id, InstanceID, Instance ID",
    ACCOUNT_ID: "account_id, AccountID, Account ID",
    REGION: "region, Region",
}


def _header_key(cell: str) -> str:
    """What a header means once case, spaces, underscores and dashes are ignored."""
    return re.sub(r"[\s_\-]+", "", cell).lower()


_COLUMN_BY_KEY = {_header_key(c): c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
_ALL_REGIONS = sorted(r for p in PARTITIONS.values() for r in p.regions)


def validate_change_number(value: str) -> str:
    """The change number without surrounding spaces; ``ValueError`` when it is not one."""
    if not isinstance(value, str):
        raise ValueError(f"a change number is text, not {type(value).__name__}")
    number = value.strip()
    if not number:
        raise ValueError("the change number is empty")
    if not _CHANGE_NUMBER.fullmatch(number):
        raise ValueError(
            f"{_show(number)} is not a valid change number: use 1 to 50 letters, digits, "
            "'-' or '_' (no spaces)"
        )
    return number


class ChangeFileProblem(NamedTuple):
    """One thing wrong in a change file. ``row`` counts as a spreadsheet does (header = 1)."""

    row: int | None
    column: str | None
    message: str

    def describe(self) -> str:
        where = ", ".join(
            part
            for part in (f"row {self.row}" if self.row else None, self.column)
            if part is not None
        )
        return f"{where}: {self.message}" if where else self.message


class ChangeFileError(ValueError):
    """A change file that cannot be used. ``problems`` holds the first
    ``MAX_PROBLEMS_LISTED`` things wrong with it, in row order; ``problem_count`` counts all."""

    def __init__(self, problems: list[ChangeFileProblem], header_row: int = 1) -> None:
        self.problems = problems[:MAX_PROBLEMS_LISTED]
        self.problem_count = len(problems)
        self.header_row = header_row
        summary = f"Change file rejected ({_count(problems, 'problem')}"
        if any(problem.row for problem in problems):
            summary += (
                "; rows are numbered as in a spreadsheet: the header is row "
                f"{header_row}, the first data row is row {header_row + 1}"
            )
        lines = [
            f"{summary}); fix these and submit it again:",
            *(problem.describe() for problem in self.problems),
        ]
        unlisted = len(problems) - len(self.problems)
        if unlisted:
            lines.append(
                f"... and {unlisted} more {'problem' if unlisted == 1 else 'problems'} not "
                f"listed (only the first {MAX_PROBLEMS_LISTED} are); fix the ones above and "
                "submit the file again to see the rest."
            )
        super().__init__("\n".join(lines))


class ChangeSpec(BaseModel):
    """A change ticket and the instances it covers, as validated intake."""

    change_number: str = Field(description="the ticket, e.g. CHG0012345")
    targets: list[Target] = Field(min_length=1)
    warnings: list[str] = Field(default_factory=list, description="merged duplicates etc.")

    @field_validator("change_number")
    @classmethod
    def _valid_change_number(cls, value: str) -> str:
        return validate_change_number(value)

    @model_validator(mode="after")
    def _each_instance_once(self) -> ChangeSpec:
        counts = Counter(target.instance_id for target in self.targets)
        twice = sorted(instance_id for instance_id, n in counts.items() if n > 1)
        if twice:
            raise ValueError(f"instances listed more than once: {', '.join(twice)}")
        return self


def parse_change_csv(text: str | bytes) -> ChangeSpec:
    """Read a change from CSV text (or UTF-8 bytes, with or without BOM).

    Raises ``ChangeFileError`` listing every problem when any row is bad.
    """
    _check_size(len(text), "bytes" if isinstance(text, bytes) else "characters")
    if isinstance(text, bytes):
        text = _decode(text)
    records = _records(text.removeprefix("\ufeff"))
    header = next(((row, cells) for row, cells in records if not _is_blank(cells)), None)
    if header is None:
        raise ChangeFileError(
            [
                ChangeFileProblem(
                    None,
                    None,
                    "the file is empty; expected a header row such as "
                    "change_number,instance_id,account_id,region,platform,name",
                )
            ]
        )
    header_row, header_cells = header
    reader = _RowReader(header_cells, header_row)
    for row, cells in records:
        if _is_blank(cells):
            continue
        if reader.data_rows == MAX_CHANGE_ROWS:
            raise ChangeFileError([_too_many_rows(row)], header_row)
        reader.read_row(row, cells)
    return reader.finish()


def _check_size(size: int, unit: str) -> None:
    if size > MAX_CHANGE_FILE_BYTES:
        raise ChangeFileError(
            [
                ChangeFileProblem(
                    None,
                    None,
                    f"the file is {size:,} {unit} long; a change file may be at most "
                    f"{MAX_CHANGE_FILE_BYTES:,} bytes ({MAX_CHANGE_FILE_BYTES // 2**20} MB) and "
                    f"{MAX_CHANGE_ROWS:,} instance rows: split the change into several",
                )
            ]
        )


def _too_many_rows(row: int) -> ChangeFileProblem:
    return ChangeFileProblem(
        row,
        None,
        f"more than {MAX_CHANGE_ROWS:,} instance rows (the rest of the file was not read); "
        f"a change may name at most {MAX_CHANGE_ROWS:,} instances: split it into several",
    )


def load_change_input(value: str, changes_dir: Path | None = None) -> ChangeSpec:
    """A change from CSV text, or from a CSV file in the changes directory.

    ``value`` is CSV text when it holds a line break; else the name or path of a file inside
    ``changes_dir`` (default: the ``CLOUDOPS_CHANGES_DIR`` setting) when there is one; else
    CSV text when it holds a comma. A path anywhere else (``/proc/self/mem``, ``../x``, a
    symbolic link out of the directory) is refused with a message saying where change files
    go: a flow parameter must not make the worker read its own files.
    """
    if not value.strip():
        raise _refusal(
            "no change given: pass the CSV text, or the name of a CSV file in "
            "the changes directory"
        )
    if "\n" in value or "\r" in value:
        return parse_change_csv(value)
    directory = (changes_dir or get_settings().changes_dir).expanduser()
    path, problem = _file_in(directory, value)
    if path is not None:
        return parse_change_csv(_read_change_file(path))
    if "," in value:
        return parse_change_csv(value)
    raise _refusal(problem or f"{_show(value)} is not a change file")


def _refusal(message: str) -> ChangeFileError:
    return ChangeFileError([ChangeFileProblem(None, None, message)])


def _file_in(directory: Path, value: str) -> tuple[Path | None, str | None]:
    """(the file ``value`` names inside ``directory``, None), or (None, why it is not one)."""
    where = (
        f"change files go in the changes directory {str(directory)!r} (setting "
        "CLOUDOPS_CHANGES_DIR): save the file there and pass its name, or pass the CSV text"
    )
    if "\0" in value or len(value) > 4096:
        return None, f"{_show(value)} is not a file name; {where}"
    try:
        home = directory.resolve()
        candidate = Path(value.strip()).expanduser()
        resolved = (home / candidate).resolve()  # an absolute candidate replaces home
    except (OSError, RuntimeError, ValueError):
        return None, f"{_show(value)} is not a file name; {where}"
    if not resolved.is_relative_to(home):
        return None, f"{_show(value)} is outside the changes directory; {where}"
    if not home.is_dir():
        return None, (
            f"the changes directory {str(directory)!r} does not exist: create it and save "
            f"the change file there (or set CLOUDOPS_CHANGES_DIR), or pass the CSV text"
        )
    try:
        mode = resolved.stat().st_mode
    except OSError:
        return None, f"no change file {_show(value)} in the changes directory; {where}"
    if stat.S_ISDIR(mode):
        return None, f"{_show(value)} is a directory, not a CSV file; {where}"
    if not stat.S_ISREG(mode):
        return None, f"{_show(value)} is not a regular file; {where}"
    return resolved, None


def _read_change_file(path: Path) -> bytes:
    """The bytes of a change file, refused unread when it is past the size limit."""
    try:
        # O_NOFOLLOW: the path was resolved, so a link appearing there now is someone's trick.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(descriptor, "rb") as file:
            _check_size(os.fstat(file.fileno()).st_size, "bytes")
            return file.read(MAX_CHANGE_FILE_BYTES + 1)
    except OSError as exc:
        raise _refusal(f"cannot read the change file {str(path)!r}: {exc.strerror}") from None


# A cell check returns the normalised value, or a problem to report.
_Check = Callable[[str], tuple[str | None, str | None]]


class _RowReader:
    """Checks data rows against the header and collects problems, warnings and targets."""

    def __init__(self, header: list[str], header_row: int) -> None:
        self.header_row = header_row
        self.width = len(header)
        self.problems: list[ChangeFileProblem] = []
        self.warnings: list[str] = []
        self.columns: dict[str, int] = {}
        self.change_numbers: dict[str, list[int]] = {}
        self.targets: dict[str, tuple[int, Target]] = {}
        self.data_rows = 0
        self._read_header(header)

    def _read_header(self, header: list[str]) -> None:
        for position, cell in enumerate(header):
            label = cell.strip()
            column = _COLUMN_BY_KEY.get(_header_key(label))
            if not label:
                continue  # spreadsheets export trailing empty columns
            if column is None:
                self.warnings.append(f"column {_show(label)} is not used and was ignored")
            elif column in self.columns:
                first = header[self.columns[column]].strip()
                self._problem(
                    self.header_row,
                    column,
                    f"column appears twice (as {_show(first)} and {_show(label)}); keep one",
                )
            else:
                self.columns[column] = position
        separator = _other_separator(header)
        if separator:
            self._problem(
                self.header_row,
                None,
                f"the header is one cell holding {separator!r}: the file seems to be separated "
                f"by {separator!r}; save it as comma-separated CSV",
            )
        for column in REQUIRED_COLUMNS:
            if column not in self.columns:
                self._problem(
                    self.header_row,
                    column,
                    f"missing column (write it as one of: {_SPELLINGS[column]})",
                )

    def read_row(self, row: int, cells: list[str]) -> None:
        self.data_rows += 1
        extra = [c for c in cells[self.width :] if c.strip()]
        if extra:
            self._problem(
                row,
                None,
                f"{len(cells)} cells but the header has {self.width}; a value may contain an "
                "unquoted comma",
            )
        values = {
            column: (cells[position].strip() if position < len(cells) else "")
            for column, position in self.columns.items()
        }
        before = len(self.problems)
        change_number = self._cell(row, values, CHANGE_NUMBER, _check_change_number)
        instance_id = self._cell(row, values, INSTANCE_ID, _check_instance_id)
        account_id = self._cell(row, values, ACCOUNT_ID, _check_account_id)
        region = self._cell(row, values, REGION, _check_region)
        platform = self._cell(row, values, PLATFORM, _check_platform)
        name = self._cell(row, values, NAME, _check_name)
        if change_number is not None:
            self.change_numbers.setdefault(change_number, []).append(row)
        if len(self.problems) > before or None in (instance_id, account_id, region):
            return
        assert instance_id is not None and account_id is not None and region is not None
        target = Target(
            instance_id=instance_id,
            account_id=account_id,
            region=region,
            platform=Platform(platform or Platform.LINUX),
            name=name or None,
        )
        self._add_target(row, target)

    def _cell(self, row: int, values: dict[str, str], column: str, check: _Check) -> str | None:
        if column not in values:
            return None
        if "\0" in values[column]:
            # No database takes NUL in text (PostgreSQL refuses it); it is never meant.
            self._problem(
                row,
                column,
                "contains a NUL character (\\0): retype the cell or export the "
                "file again from the spreadsheet",
            )
            return None
        value, problem = check(values[column])
        if problem:
            self._problem(row, column, problem)
        return value

    def _add_target(self, row: int, target: Target) -> None:
        known = self.targets.get(target.instance_id)
        if known is None:
            self.targets[target.instance_id] = (row, target)
            return
        first_row, first = known
        if first == target:
            self.warnings.append(
                f"row {row} repeats row {first_row} ({target.instance_id}); merged into one"
            )
            return
        differences = "; ".join(
            f"{field} {_field_text(first, field)} there, {_field_text(target, field)} here"
            for field in (ACCOUNT_ID, REGION, PLATFORM, NAME)
            if getattr(first, field) != getattr(target, field)
        )
        self._problem(
            row,
            INSTANCE_ID,
            f"{target.instance_id} is also in row {first_row} with other values "
            f"({differences}); an instance has one account, region and platform — keep one row",
        )

    def finish(self) -> ChangeSpec:
        if self.data_rows == 0 and not self.problems:
            self._problem(None, None, "the file has a header but no instance rows")
        if len(self.change_numbers) > 1:
            (first, first_rows), *others = self.change_numbers.items()
            for number, rows in others:
                self._problem(
                    rows[0],
                    CHANGE_NUMBER,
                    f"{_show(number)} ({_count(rows, 'row')}) differs from {_show(first)} of row "
                    f"{first_rows[0]}; one file holds one change — split it into one file per "
                    "change",
                )
        if self.problems:
            self.problems.sort(key=lambda p: (p.row or 0, p.column or ""))
            raise ChangeFileError(self.problems, self.header_row)
        (change_number,) = self.change_numbers
        return ChangeSpec(
            change_number=change_number,
            targets=[target for _, target in self.targets.values()],
            warnings=self.warnings,
        )

    def _problem(self, row: int | None, column: str | None, message: str) -> None:
        self.problems.append(ChangeFileProblem(row, column, message))


def _field_text(target: Target, field: str) -> str:
    value = getattr(target, field)
    if isinstance(value, Platform):
        value = value.value
    return repr(value) if value else "(empty)"


def _check_change_number(value: str) -> tuple[str | None, str | None]:
    if not value:
        return None, "missing change number"
    try:
        return validate_change_number(value), None
    except ValueError as exc:
        return None, str(exc)


def _check_instance_id(value: str) -> tuple[str | None, str | None]:
    if not value:
        return None, "missing instance id"
    instance_id = value.lower()  # ids copied from some consoles arrive in upper case
    if _INSTANCE_ID.fullmatch(instance_id):
        return instance_id, None
    digits = instance_id.removeprefix("i-")
    if instance_id.startswith("i-") and re.fullmatch(r"[0-9a-f]+", digits):
        return None, (
            f"{_show(value)} has {_count(digits, 'hex digit')} after 'i-'; instance ids have 8 or "
            "17 — check for a character lost or added when copying"
        )
    return None, (
        f"{_show(value)} is not an instance id; expected 'i-' and 8 or 17 hex digits, "
        "like i-0123456789abcdef0"
    )


def _check_account_id(value: str) -> tuple[str | None, str | None]:
    if not value:
        return None, "missing account id"
    if _ACCOUNT_ID.fullmatch(value):
        return value, None
    if value.isascii() and value.isdigit() and len(value) < 12:
        return None, (
            f"{_show(value)} has {_count(value, 'digit')}; account ids have 12 — a spreadsheet may "
            f"have dropped a leading zero (did you mean {value.zfill(12)!r}?)"
        )
    if _SCIENTIFIC.fullmatch(value):
        return None, (
            f"{_show(value)} is a number the spreadsheet wrote in scientific notation; format "
            "the account column as text and enter the 12 digits again"
        )
    compact = re.sub(r"[\s\-]", "", value)
    if _ACCOUNT_ID.fullmatch(compact):
        return None, f"{_show(value)}: write the account id as 12 digits only ({compact!r})"
    return None, f"{_show(value)} is not an account id; account ids are exactly 12 digits"


def _check_region(value: str) -> tuple[str | None, str | None]:
    if not value:
        return None, "missing region"
    region = value.lower()
    if is_known_region(region):
        return region, None
    return None, _region_refusal(region, _show(value))


@functools.lru_cache(maxsize=256)
def _region_refusal(region: str, shown: str) -> str:
    # Cached: a file of many rows usually repeats one wrong region, and matching is slow.
    foreign = foreign_partition(region)
    if foreign is not None:
        return (
            f"{shown} is a region of {foreign}, which these flows do not serve (only AWS "
            "Commercial and AWS GovCloud)"
        )
    return f"unknown region {shown} ({_region_hint(region)})"


def _region_hint(region: str) -> str:
    close = difflib.get_close_matches(region, _ALL_REGIONS, n=2, cutoff=0.8)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "a region of AWS Commercial or GovCloud, e.g. us-east-1 or us-gov-west-1"


def _check_platform(value: str) -> tuple[str | None, str | None]:
    if not value:
        return Platform.LINUX.value, None
    platform = value.lower()
    if platform in {p.value for p in Platform}:
        return platform, None
    allowed = " or ".join(p.value for p in Platform)
    return None, f"unknown platform {_show(value)}; use {allowed} (empty means linux)"


def _check_name(value: str) -> tuple[str | None, str | None]:
    if len(value) > _NAME_MAX:
        return None, f"the name is {len(value)} characters long; at most {_NAME_MAX} fit"
    return value, None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChangeFileError(
            [
                ChangeFileProblem(
                    None,
                    None,
                    f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                    f"{exc.start}); save it from the spreadsheet as 'CSV UTF-8'",
                )
            ]
        ) from None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number as a spreadsheet counts it, cells) of each record, read as needed."""
    reader = csv.reader(io.StringIO(text, newline=""))
    row = 0
    try:
        for row, cells in enumerate(reader, start=1):
            yield row, cells
    except csv.Error as exc:
        raise ChangeFileError(
            [ChangeFileProblem(row + 1, None, f"cannot be read as CSV: {exc}")]
        ) from None


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _other_separator(header: list[str]) -> str | None:
    if len(header) != 1:
        return None
    return next((sep for sep in (";", "\t", "|") if sep in header[0]), None)


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}" + ("" if len(items) == 1 else "s")


def _show(value: str) -> str:
    """A cell value quoted for a message, shortened when long."""
    return repr(value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "…")
