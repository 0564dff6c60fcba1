"""The ASA enrollment token: where it is read from, and how it is kept out of every record.

The token goes into the text of the install/reset scripts sent to the instances and nowhere
else. It is not a flow parameter, it is never logged, and every result is passed through
:func:`redact` before it is recorded, logged, returned or shown. SSM itself keeps the
parameters of every command (``ListCommands``, the console's command history), so with the
AWS provider anyone allowed ``ssm:ListCommands`` in the target account can read it there.
"""

from __future__ import annotations

import os
from typing import cast

from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound

from flows.sft.parameters import SftFixerInputError
from providers.base import ScriptResult

TOKEN_VARIABLE = "SFT_ENROLLMENT_TOKEN"
REDACTED = "***"
# A real ASA enrollment token is a long opaque string; a short one is a paste mistake, and
# redacting a short string from output would also mangle ordinary words in it.
TOKEN_MIN_LENGTH = 16


class EnrollmentTokenMissingError(SftFixerInputError):
    """Install, reset or auto was asked for, and no enrollment token is configured."""


def load_enrollment_token(token_block: str) -> str:
    """The ASA enrollment token: the Prefect Secret block ``token_block`` when it is saved,
    else the ``SFT_ENROLLMENT_TOKEN`` variable. Raises when neither holds a usable one; the
    message never contains the token."""
    where = f"Prefect Secret block {token_block!r}"
    value: object = None
    if token_block.strip():
        try:
            # _sync: flow code is sync, even when an event loop runs underneath it.
            block = cast(Secret, Secret.load(token_block.strip(), _sync=True))  # type: ignore[call-arg]
        except ValueError as exc:
            # Prefect reports a missing block document as a ValueError from ObjectNotFound.
            if not isinstance(exc.__cause__, ObjectNotFound):
                raise
        else:
            # The raw value: Secret.get() would turn a token that looks like JSON into a number.
            value = block.value.get_secret_value()
    if not value:  # no block, or an empty one: the variable is the fallback either way
        where = f"variable {TOKEN_VARIABLE}"
        value = os.environ.get(TOKEN_VARIABLE)
    token = value.strip() if isinstance(value, str) else ""
    if not token:
        raise EnrollmentTokenMissingError(
            f"no SFT enrollment token: install, reset and auto need one, and none was found in "
            f"the Prefect Secret block {token_block!r} or the variable {TOKEN_VARIABLE}. Save "
            f"the token from the ASA project's Enrollment tab as a Secret block (UI: Blocks > "
            f"Secret, named {token_block!r}; or `Secret(value=...).save({token_block!r})`), or "
            f"set {TOKEN_VARIABLE} for the worker. To only look at the agent, run with "
            "action=detect. Nothing was sent."
        )
    if len(token) < TOKEN_MIN_LENGTH or any(c.isspace() or not c.isprintable() for c in token):
        raise SftFixerInputError(
            f"the enrollment token in the {where} is not a usable token ({len(token)} "
            f"characters; expected at least {TOKEN_MIN_LENGTH}, with no spaces or line "
            "breaks): copy it again from the ASA project's Enrollment tab. Nothing was sent."
        )
    return token


def redact(result: ScriptResult, secret: str | None) -> ScriptResult:
    """``result`` with every occurrence of ``secret`` in its output and error replaced."""
    if not secret:
        return result
    return result.model_copy(
        update={
            "stdout": result.stdout.replace(secret, REDACTED),
            "stderr": result.stderr.replace(secret, REDACTED),
            "error": result.error.replace(secret, REDACTED) if result.error else result.error,
        }
    )
