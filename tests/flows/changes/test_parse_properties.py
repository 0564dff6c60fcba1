"""Property tests: whatever a user uploads, the parser answers with a change or a
ChangeFileError, and a valid change survives any header spelling and file form."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.changes import ChangeFileError, ChangeSpec, load_change_input, parse_change_csv
from providers.base import Platform, Target
from providers.partitions import PARTITIONS

REGIONS = sorted(r for p in PARTITIONS.values() for r in p.regions)
SPELLINGS = {
    "change_number": ["change_number", "ChangeNumber", "Change Number", "Change_number"],
    "instance_id": ["instance_id", "InstanceID", "Instance ID", "INSTANCE_ID"],
    "account_id": ["account_id", "AccountID", "Account ID", "accountid"],
    "region": ["region", "Region", " REGION "],
    "platform": ["platform", "Platform"],
    "name": ["name", "Name"],
}
HEX = "0123456789abcdef"

change_numbers = st.from_regex(r"[A-Za-z0-9_-]{1,50}", fullmatch=True)
instance_ids = st.one_of(
    st.text(HEX, min_size=8, max_size=8), st.text(HEX, min_size=17, max_size=17)
).map(lambda digits: f"i-{digits}")
targets = st.builds(
    Target,
    instance_id=instance_ids,
    account_id=st.from_regex(r"[0-9]{12}", fullmatch=True),
    region=st.sampled_from(REGIONS),
    platform=st.sampled_from(list(Platform)),
    name=st.one_of(
        st.none(),
        st.text(
            st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
            min_size=1,
            max_size=30,
        ),
    ),
)
specs = st.builds(
    ChangeSpec,
    change_number=change_numbers,
    targets=st.lists(targets, min_size=1, max_size=8, unique_by=lambda t: t.instance_id),
)


def _column_of(header_cell: str) -> str:
    return next(c for c, spellings in SPELLINGS.items() if header_cell in spellings)


def _render(spec: ChangeSpec, draw) -> str:
    columns = draw(st.permutations(list(SPELLINGS)))
    header = [draw(st.sampled_from(SPELLINGS[c])) for c in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    for target in spec.targets:
        values = {
            "change_number": spec.change_number,
            "instance_id": target.instance_id,
            "account_id": target.account_id,
            "region": target.region,
            "platform": draw(st.sampled_from([target.platform.value, target.platform.upper()])),
            "name": target.name or "",
        }
        writer.writerow([values[c] for c in columns])
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return bom + buffer.getvalue()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_parses_or_raises_change_file_error(text):
    try:
        spec = parse_change_csv(text)
    except ChangeFileError as exc:
        assert exc.problems
        assert all(isinstance(p.message, str) and p.message for p in exc.problems)
    else:
        assert spec.targets


@settings(max_examples=200)
@given(st.binary())
def test_any_bytes_parse_or_raise_change_file_error(data):
    try:
        parse_change_csv(data)
    except ChangeFileError as exc:
        assert exc.problems


@settings(max_examples=200)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.sampled_from(
                    ["CHG1", "i-0123456789abcdef0", "012345678901", "us-east-1", "windows", ""]
                ),
                st.text(max_size=20),
            ),
            max_size=8,
        ),
        max_size=6,
    ),
    st.permutations([*SPELLINGS]),
)
def test_rows_of_near_valid_cells_parse_or_raise_change_file_error(rows, columns):
    buffer = io.StringIO()
    csv.writer(buffer).writerows([columns, *rows])
    try:
        parse_change_csv(buffer.getvalue())
    except ChangeFileError as exc:
        assert exc.problems


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_load_change_input_answers_any_value_with_a_change_or_change_file_error(value):
    try:
        load_change_input(value)
    except ChangeFileError as exc:
        assert exc.problems


@settings(max_examples=150)
@given(st.data())
def test_a_valid_change_reads_back_whatever_the_header_spelling_and_file_form(data):
    spec = data.draw(specs)
    assert parse_change_csv(_render(spec, data.draw)) == spec


@settings(max_examples=150)
@given(st.data())
def test_one_bad_cell_is_reported_at_its_row_and_column(data):
    spec = data.draw(specs)
    text = _render(spec, data.draw)
    lines = text.splitlines(keepends=True)
    header = next(csv.reader([lines[0].removeprefix("\ufeff")]))
    row_index = data.draw(st.integers(1, len(lines) - 1))
    column, bad = data.draw(
        st.sampled_from(
            [
                ("instance_id", "i-xyz"),
                ("account_id", "12345"),
                ("region", "moon-1"),
                ("platform", "aix"),
                ("change_number", "CHG 1"),
            ]
        )
    )
    position = [_column_of(h) for h in header].index(column)
    cells = next(csv.reader([lines[row_index]]))
    cells[position] = bad
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    lines[row_index] = buffer.getvalue()
    try:
        parse_change_csv("".join(lines))
    except ChangeFileError as exc:
        assert (row_index + 1, column) in [(p.row, p.column) for p in exc.problems]
    else:
        raise AssertionError(f"a bad {column} in row {row_index + 1} was accepted")
