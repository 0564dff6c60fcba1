"""Text from servers made fit for a person: terminal codes out, one spelling for yes and no,
markdown that the text itself cannot break.

Everything a script prints passes through here before it reaches a report, an artifact or a
parser, so a colour code, a carriage return or a stray backtick on one server never garbles
what an operator reads.
"""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves), OSC sequences (window title, clipboard) ended by BEL
# or ST, and the remaining two-byte escapes some terminal tools emit.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, up to BEL or ST (or the end)
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
)
# C0 controls but tab and newline, DEL, and the C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BACKTICKS = re.compile(r"`+")


def clean_output(text: str) -> str:
    """``text`` without ANSI/OSC sequences, carriage returns and other control characters;
    tabs and newlines are kept."""
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ANSI.sub("", unified))


def first_line(text: str, limit: int = 120) -> str:
    """The first non-blank line of ``text``, cleaned and cut to ``limit`` characters."""
    line = next((ln.strip() for ln in clean_output(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def one_line(text: str) -> str:
    """``text`` cleaned and folded onto one line, for headings, names and table cells."""
    return " ".join(clean_output(text).split())


def yes_no(value: bool | None) -> str:
    """``yes``, ``no``, or ``unknown`` when it could not be told."""
    return "unknown" if value is None else ("yes" if value else "no")


def passed_failed(value: bool | None) -> str:
    """``PASSED``, ``FAILED``, or ``unknown``, as the QC report spells its results."""
    return "unknown" if value is None else ("PASSED" if value else "FAILED")


def fenced(text: str, language: str = "") -> str:
    """``text`` as a markdown code block whose fence no line of the text can close."""
    body = clean_output(text).rstrip("\n")
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{body}\n{fence}\n"
