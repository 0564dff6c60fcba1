"""Text from servers made fit for a person: terminal codes out, one spelling for yes and no,
markdown that the text itself cannot break.

Everything a script prints passes through here before it reaches a report, an artifact or a
parser, so a colour code, a carriage return or a stray backtick on one server never garbles
what an operator reads.
"""

from __future__ import annotations

import html
import re

# Terminal control sequences, in their 7-bit (ESC ...) and 8-bit (C1) forms: CSI (colours,
# cursor moves, clear screen); OSC (window title, OSC 52 clipboard, OSC 8 links) and the
# DCS/SOS/PM/APC strings, each up to its terminator (BEL or ST) or the end of the text; then
# the other escapes (ESC c reset, ESC ( B charset and the like).
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # strings
    r"|\x1b[ -/]*[0-~]"  # other escapes
)
# C0 controls but tab and newline, DEL, the C1 controls, and the invisible Unicode controls
# that reorder what a reader sees (bidirectional overrides and isolates).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Line ends that are not newlines: a shell does not break lines there, str.splitlines does.
_OTHER_LINE_ENDS = re.compile(r"\r\n?|[\u2028\u2029]")
_BACKTICKS = re.compile(r"`+")
# Markdown punctuation that could turn words into markup: escapes, code, emphasis, links and
# images, table cells, strikethrough, headings. An underscore inside a word is no emphasis
# (CommonMark), so names like sft_install stay as they are.
_MARKDOWN_PUNCTUATION = re.compile(r"[\\`*\[\]|~#]|(?<![^\W_])_|_(?![^\W_])")
# What starts a list or a rule when a cell is rendered alone,
# as the Prefect UI does with the cells of a table artifact.
_LIST_MARKER = re.compile(r"^(?:[-+](?=\s|$|-)|\d{1,9}(?=[.)](?:\s|$)))")


def clean_output(text: str) -> str:
    """``text`` without terminal control sequences, carriage returns and other control
    characters; tabs and newlines are kept."""
    unified = _OTHER_LINE_ENDS.sub("\n", text)
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


def markdown_text(text: str) -> str:
    """``text`` as words in markdown: cleaned, on one line, with every character that could
    make markup (HTML, links, images, code, emphasis, table cells, headings) escaped, so a
    reader sees exactly the text. For names, reasons and table cells."""
    words = one_line(text)
    escaped = _MARKDOWN_PUNCTUATION.sub(lambda m: "\\" + m.group(), words)
    escaped = _LIST_MARKER.sub(_escape_list_marker, escaped)
    return html.escape(escaped, quote=False)


def _escape_list_marker(match: re.Match[str]) -> str:
    marker = match.group()
    # "1." stays a number with its dot escaped; "-" and "+" get the backslash in front.
    return marker + "\\" if marker.isdigit() else "\\" + marker


def code_span(text: str) -> str:
    """``text`` on one line as inline code, delimited by more backticks than it holds."""
    words = one_line(text)
    longest = max((len(run) for run in _BACKTICKS.findall(words)), default=0)
    fence = "`" * (longest + 1)
    # A space on each side keeps a backtick at either end from joining the delimiters;
    # CommonMark takes one away again.
    padded = f" {words} " if words.startswith("`") or words.endswith("`") or not words else words
    return f"{fence}{padded}{fence}"


def fenced(text: str, language: str = "") -> str:
    """``text`` as a markdown code block whose fence no line of the text can close."""
    body = clean_output(text).rstrip("\n")
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    info = re.sub(r"[^A-Za-z0-9_+-]", "", language)
    return f"{fence}{info}\n{body}\n{fence}\n" if body else f"{fence}{info}\n{fence}\n"
