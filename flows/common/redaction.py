"""Redaction of a known secret from text a server printed: the second line of defence.

The first line is that no script is given a secret to print. Should a tool on a server print
one all the same, it rarely comes out as the exact string: a terminal wraps it over lines,
colour codes land inside it, or it is printed base64-encoded (``base64`` of a config file, a
``kubectl get secret``). :func:`secret_pattern` matches each of those forms:

- the secret with, between any two of its characters, "noise" a terminal adds: white space
  and line breaks, ANSI/OSC escape sequences, other control characters;
- the base64 of the secret (standard and URL-safe alphabets), as it appears inside a longer
  base64 text at any of the three byte alignments, with the same noise allowed between its
  characters (``base64`` wraps lines at 76).

Only the characters a form fully determines are matched, so the match never depends on what
surrounds the secret.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache

REDACTED = "***"

# What may sit between two characters of a printed secret without hiding it from a person:
# white space and line breaks, CSI and OSC escape sequences, other C0/C1 control characters.
_NOISE = (
    r"(?:\s"
    r"|\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f])*"
)


def base64_forms(secret: str) -> list[str]:
    """The runs of base64 characters that encode ``secret`` wherever it sits in a longer
    base64 text: one per byte alignment (0, 1 or 2 bytes before it in its 3-byte group) and
    alphabet, each only the characters that hold no bit of the text around the secret."""
    data = secret.encode()
    forms: list[str] = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        # Character i carries bits 6i..6i+5: keep those entirely inside the secret's bytes.
        first = -(-8 * offset // 6)
        last = (8 * (offset + len(data))) // 6
        fragment = encoded[first:last]
        forms += [fragment, fragment.replace("+", "-").replace("/", "_")]
    return list(dict.fromkeys(f for f in forms if f))


def _spread(text: str) -> str:
    """A pattern of ``text`` with noise allowed between any two of its characters."""
    return _NOISE.join(re.escape(c) for c in text)


@lru_cache(maxsize=32)
def secret_pattern(secret: str) -> re.Pattern[str]:
    """What matches ``secret`` in any of the forms the module docstring lists."""
    forms = [secret, *base64_forms(secret)]
    return re.compile("|".join(_spread(form) for form in sorted(forms, key=len, reverse=True)))


def redact_secret(text: str, secret: str | None) -> str:
    """``text`` with every form of ``secret`` replaced by ``***``."""
    if not secret or not text:
        return text
    return secret_pattern(secret).sub(REDACTED, text)
