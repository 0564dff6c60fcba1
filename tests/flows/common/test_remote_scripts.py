"""How parameters are written in front of a script: read back the way the interpreter reads
them, whatever the value holds.

There is no ``pwsh`` on the test machines, so the PowerShell header is read with the lexing
rule of the PowerShell language specification (section 2.3.5.2, verbatim string literals):
the string opens and closes on any *single-quote-character* (U+0027, U+2018, U+2019,
U+201A, U+201B), and two of them in a row stand for one quote inside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flows
from flows.common.remote_scripts import available_scripts, load_script, render_script
from providers.base import Interpreter

POWERSHELL_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
# Values rich in what ends or escapes a string: every PowerShell single quote, double quotes,
# backticks, dollars, semicolons, line breaks, and any other text.
HOSTILE_VALUES = st.lists(
    st.one_of(
        st.sampled_from([*POWERSHELL_SINGLE_QUOTES, '"', "`", "$", ";", "\n", "\r", "(", ")"]),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=40,
).map("".join)


def read_powershell_verbatim_string(text: str) -> tuple[str, str]:
    """(the value, what follows it) of the verbatim string literal that ``text`` starts with."""
    assert text and text[0] in POWERSHELL_SINGLE_QUOTES, f"no string literal at {text[:20]!r}"
    value: list[str] = []
    position = 1
    while position < len(text):
        char = text[position]
        if char in POWERSHELL_SINGLE_QUOTES:
            following = text[position + 1 : position + 2]
            if following and following in POWERSHELL_SINGLE_QUOTES:
                value.append(following)
                position += 2
                continue
            return "".join(value), text[position + 1 :]
        value.append(char)
        position += 1
    raise AssertionError(f"the string literal in {text!r} never closes")


def powershell_assignment(rendered: str, name: str) -> tuple[str, str]:
    prefix = f"$env:{name} = "
    assert rendered.startswith(prefix), rendered[:80]
    return read_powershell_verbatim_string(rendered[len(prefix) :])


@pytest.mark.parametrize("quote", list(POWERSHELL_SINGLE_QUOTES))
def test_each_powershell_single_quote_stays_inside_the_string(quote: str) -> None:
    value = f"it{quote}s; Remove-Item -Recurse C:\\ #"
    rendered = render_script("Write-Output $env:NOTE\n", {"NOTE": value}, Interpreter.POWERSHELL)

    read, rest = powershell_assignment(rendered, "NOTE")

    assert read == value
    assert rest == "\nWrite-Output $env:NOTE\n"


@given(value=HOSTILE_VALUES)
def test_any_value_reads_back_whole_in_powershell(value: str) -> None:
    rendered = render_script("Write-Output $env:V\n", {"V": value}, Interpreter.POWERSHELL)

    read, rest = powershell_assignment(rendered, "V")

    assert read == value
    assert rest == "\nWrite-Output $env:V\n"


def test_a_nul_byte_is_refused_before_any_text_is_made() -> None:
    with pytest.raises(ValueError, match="V contains a NUL byte"):
        render_script("Write-Output 1\n", {"V": "a\0b"}, Interpreter.POWERSHELL)


def test_a_script_travels_with_the_library_it_includes_written_in() -> None:
    library = (
        Path(flows.__file__).parent / "scripts" / "linux" / "lib" / "change_folder.sh"
    ).read_text()

    for name in ("linux/qc.sh", "linux/stage_kernel.sh", "linux/collect_prep_reports.sh"):
        text = load_script(name)
        assert "# cloudops-include:" not in text
        assert text.count(library.rstrip("\n")) == 1
    assert "linux/lib/change_folder.sh" not in available_scripts()
