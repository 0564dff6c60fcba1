"""Redaction of a known secret from server output, in the forms a careless tool prints it:
as it is, split over lines, with colour codes inside, base64-encoded (at any alignment, either
alphabet, wrapped). Property tests: whatever surrounds the secret and however it is cut."""

from __future__ import annotations

import base64
import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.common.redaction import REDACTED, base64_forms, redact_secret

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_.=+/"
tokens = st.text(alphabet=TOKEN_ALPHABET, min_size=16, max_size=80)
# Text a server prints around a secret: anything, control characters and escapes included.
surroundings = st.text(max_size=60)
ANSI = ("\x1b[31m", "\x1b[0m", "\x1b[1;33m", "\x1b]0;title\x07", "\x1b[2K")
noise = st.lists(st.sampled_from(["\n", "\r\n", " ", "\t", *ANSI]), min_size=1, max_size=3).map(
    "".join
)


def _visible(text: str) -> str:
    """``text`` as a person reads it on a terminal: no line breaks, spaces or escapes."""
    return re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\s", "", text)


@settings(max_examples=150, deadline=None)
@given(tokens, surroundings, surroundings, st.data())
def test_a_secret_cut_anywhere_by_line_breaks_and_colour_codes_is_redacted(
    secret: str, before: str, after: str, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(secret) - 1), max_size=6)))
    pieces = [secret[i:j] for i, j in zip([0, *cuts], [*cuts, len(secret)], strict=True)]
    printed = pieces[0] + "".join(data.draw(noise) + piece for piece in pieces[1:])

    redacted = redact_secret(before + printed + after, secret)

    assert secret not in _visible(redacted)
    assert REDACTED in redacted


@settings(max_examples=150, deadline=None)
@given(
    tokens,
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.sampled_from([None, 20, 64, 76]),
    st.booleans(),
)
def test_a_secret_inside_any_base64_text_is_redacted(
    secret: str, before: bytes, after: bytes, wrap: int | None, url_safe: bool
) -> None:
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    encoded = encode(before + secret.encode() + after).decode()
    if wrap:
        encoded = "\n".join(encoded[i : i + wrap] for i in range(0, len(encoded), wrap))

    redacted = redact_secret(f"data: {encoded}\n", secret)

    assert REDACTED in redacted
    # What is left of the base64 text no longer holds the secret, whichever way it is read.
    remains = re.sub(r"\s", "", redacted)
    for form in base64_forms(secret):
        assert form not in remains


# Around a look-alike: nothing that could complete it into the secret itself.
unrelated = st.text(st.characters(blacklist_characters=TOKEN_ALPHABET), max_size=60)


@settings(max_examples=150, deadline=None)
@given(tokens, unrelated, st.integers(0, 79), st.sampled_from(TOKEN_ALPHABET))
def test_text_that_only_resembles_the_secret_is_left_alone(
    secret: str, around: str, position: int, other: str
) -> None:
    index = position % len(secret)
    if secret[index] == other:
        other = "#"
    lookalike = secret[:index] + other + secret[index + 1 :]
    text = f"{around}{lookalike}{around}"

    assert redact_secret(text, secret) == text


def test_every_printed_form_of_a_real_looking_token() -> None:
    token = "eyJ0ZWFtIjoic2Z0In0.Fl0wT0k3n-must-never-leak_qqqqqqqq"
    forms = {
        "plain": f"token={token}\n",
        "wrapped at 10": "\n".join(token[i : i + 10] for i in range(0, len(token), 10)),
        "colour inside": f"\x1b[1m{token[:20]}\x1b[0m\x1b[32m{token[20:]}\x1b[0m",
        "base64 of a file": base64.encodebytes(f"TOKEN={token}\n".encode()).decode(),
        "base64 url-safe": base64.urlsafe_b64encode(b"\xff\xfe" + token.encode()).decode(),
    }

    redacted = {name: redact_secret(text, token) for name, text in forms.items()}

    assert {name: REDACTED in text for name, text in redacted.items()} == dict.fromkeys(forms, True)
    assert redact_secret("nothing secret here\n", token) == "nothing secret here\n"
    assert redact_secret(f"a {token} b", None) == f"a {token} b"
