"""Hostile output from instances, and how to tell that a report only *shows* it.

A report is safe when the text an instance printed changes nothing but the words a person
reads: the same headings, lists, tables, cells and code blocks as with harmless text, no
HTML, no links, no images, no terminal codes. ``assert_only_words_differ`` checks that by
parsing both versions of a report with a CommonMark + GFM-tables parser (markdown-it-py) and
comparing their structure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

# What an instance (or a name tag, or a change file) can put in front of a person.
HOSTILE_PIECES = [
    "```",
    "````",
    "~~~",
    "`",
    "\n",
    "\r",
    "\r\n",
    "\n\n# Injected heading\n",
    "\n---\n",
    "\x1b]0;window title\x07",  # OSC: set the terminal title
    "\x1b]52;c;cm0gLXJmIC8K\x07",  # OSC 52: write the clipboard
    "\x1b]8;;https://evil.example/\x1b\\",  # OSC 8 hyperlink, ended by ST
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1bc",  # full reset
    "\x1b[31m",
    "\x9b31m",  # 8-bit CSI
    "\x9d0;title\x9c",  # 8-bit OSC ended by 8-bit ST
    "\x1bP1$r0m\x1b\\",  # DCS string
    "\x00",
    "\x07",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202e",  # right-to-left override
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<!--",
    "[click](javascript:alert(1))",
    "![pixel](https://evil.example/p.png)",
    "<javascript:alert(1)>",
    "\\|",
    "|",
    "\\",
    "*bold*",
    "_em_",
    "~~gone~~",
    "# ",
    "> ",
    "1. ",
    "- ",
    "&amp;",
    "&#106;avascript",
    " ",
]

hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=4)), min_size=1, max_size=8
).map("".join)

# C0 controls but tab and newline, DEL, the C1 range (ESC and CSI among them), the Unicode line
# separators and the bidirectional overrides: none may reach a report.
CONTROL_CHARACTERS = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)

_PARSER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def _shape(token: Token) -> tuple[object, ...]:
    children: list[str] = []
    for child in token.children or []:
        kind = "text" if child.type in ("text", "text_special") else child.type
        if not (children and children[-1] == kind == "text"):
            children.append(kind)
    # A text-only inline token is one piece of words, however many there are (or none).
    if token.type == "inline" and children in ([], ["text"]):
        children = ["text"]
    return (token.type, token.tag, token.nesting, tuple(children))


def shape(markdown: str) -> list[tuple[object, ...]]:
    """The structure of ``markdown``: every block and inline element, not its words."""
    return [_shape(t) for t in _PARSER.parse(markdown)]


def shown_texts(markdown: str) -> list[str]:
    """The words a person sees: each inline element's text, and each code block's content."""
    shown = []
    for token in _PARSER.parse(markdown):
        if token.type == "inline":
            shown.append("".join(c.content for c in token.children or []))
        elif token.type in ("fence", "code_block"):
            shown.append(token.content)
    return shown


def assert_only_words_differ(hostile: str, harmless: str) -> None:
    """``hostile`` (a report built with hostile text) has the structure of ``harmless`` (the
    same report built with plain words), and no control character or terminal code."""
    forbidden = sorted({repr(c) for c in CONTROL_CHARACTERS.findall(hostile)})
    assert not forbidden, f"control characters reached the report: {forbidden}"
    assert "\x1b" not in hostile
    hostile_shape, harmless_shape = shape(hostile), shape(harmless)
    if hostile_shape != harmless_shape:
        extra = [s for s in hostile_shape if s not in harmless_shape]
        raise AssertionError(
            f"the hostile text changed the report's structure: {extra[:5]}\n--- report ---\n"
            + hostile
        )


def assert_shown(markdown: str, expected: Iterable[str]) -> None:
    """Each of ``expected`` is shown somewhere, as it is (in a cell, a heading or a list)."""
    shown = shown_texts(markdown)
    for text in expected:
        assert any(text in piece for piece in shown), f"{text!r} is not shown as it is"
