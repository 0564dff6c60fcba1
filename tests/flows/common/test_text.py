"""Text from instances made fit for markdown: terminal codes out, code blocks nothing can
close, table cells nothing can split, names on one line, no HTML or links."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flows.common.reporting import markdown_table, table_cell
from flows.common.text import clean_output, code_span, fenced, markdown_text, one_line
from tests.flows.markdown_safety import (
    CONTROL_CHARACTERS,
    assert_only_words_differ,
    hostile_text,
    shape,
    shown_texts,
)


def test_terminal_codes_leave_nothing_behind() -> None:
    output = (
        "before\x1b]0;pwned title\x07\x1b[2J\x1b[H\x1bc\x1b]52;c;cm0gLXJmIC8K\x07"
        "\x9d0;8-bit title\x9c\x9b31mred\x1b[0m\x1bP1$r0m\x1b\\ after\r\n\u2028next\tcol"
    )

    cleaned = clean_output(output)

    assert cleaned == "beforered after\n\nnext\tcol"


@given(text=hostile_text)
def test_cleaned_output_has_no_control_character_but_tab_and_newline(text: str) -> None:
    cleaned = clean_output(text)

    assert CONTROL_CHARACTERS.findall(cleaned) == []


@given(text=hostile_text)
def test_a_code_block_holds_the_whole_text_and_nothing_closes_it(text: str) -> None:
    block = fenced(text)

    assert shape(block) == [("fence", "code", 0, ())]
    body = clean_output(text).rstrip("\n")
    assert shown_texts(block) == [body + "\n" if body else ""]


def test_a_line_of_backticks_inside_the_text_does_not_end_the_block() -> None:
    qc_line = "(Available Kernel Updates):\n```\n<h1>owned</h1>\n[x](javascript:alert(1))\n````"

    block = fenced(qc_line)

    assert block.startswith("`````\n") and block.endswith("\n`````\n")
    assert shape(block) == [("fence", "code", 0, ())]


@given(cells=st.lists(hostile_text, min_size=1, max_size=4))
def test_table_cells_show_their_text_on_one_line_and_never_split(cells: list[str]) -> None:
    row = {f"column {n}": value for n, value in enumerate(cells)}
    harmless = {key: "word" for key in row}

    table = markdown_table([row, row])

    assert_only_words_differ(table, markdown_table([harmless, harmless]))
    shown = shown_texts(table)
    expected = [one_line(value) for value in cells]
    assert shown == list(row) + expected + expected


def test_an_escaped_pipe_stays_inside_its_cell() -> None:
    table = markdown_table([{"output": "a \\| b | c", "error": "none"}])

    assert table_cell("a \\| b | c").count("|") == 2
    assert shown_texts(table) == ["output", "error", "a \\| b | c", "none"]


@given(name=hostile_text)
def test_a_name_in_a_heading_or_a_list_stays_one_line_of_words(name: str) -> None:
    hostile = f"# Report for {markdown_text(name)}\n\n- host: {markdown_text(name)}\n"
    harmless = "# Report for web01\n\n- host: web01\n"

    assert_only_words_differ(hostile, harmless)
    expected = one_line(name)
    assert shown_texts(hostile) == [f"Report for {expected}".rstrip(), f"host: {expected}".rstrip()]


@given(value=hostile_text)
def test_a_code_span_shows_its_text_whatever_backticks_it_holds(value: str) -> None:
    hostile = f"- provider: {code_span(value)}\n"

    assert_only_words_differ(hostile, "- provider: `aws`\n")
