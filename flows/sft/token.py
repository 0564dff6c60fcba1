"""The ASA enrollment token: where the instances read it, and how it is kept out of everything
else.

The token is never in a script's text, a command's parameters, a flow parameter, a log line,
an artifact, a result or the store. The install and reset scripts are told only *where* to
read it (``SFT_TOKEN_SOURCE``, ``SFT_TOKEN_NAME``) and read it themselves at run time:

- from a ``SecureString`` parameter (``CLOUDOPS_SFT_TOKEN_PARAMETER``) or a Secrets Manager
  secret (``CLOUDOPS_SFT_TOKEN_SECRET_ID``) the operator keeps in every account and region of
  the instances: the flow never reads the token then;
- else from where the provider puts the token the flow was given (a Prefect Secret block
  designated for it, or ``SFT_ENROLLMENT_TOKEN``) for the time of the install and reset only:
  a ``SecureString`` parameter named after the flow run in each account and region that needs
  it (aws), a file only the worker's user can read (local). It is removed once those scripts
  ran, also when they failed.

A Secret block is read only when the operator designated it (``CLOUDOPS_SFT_TOKEN_BLOCKS``):
any other is refused by name, unread, so a run can never send an unrelated secret to an
instance of the caller's choosing. Should a tool on an instance print the token all the same,
every result is redacted (:mod:`flows.common.redaction`: split over lines, with colour codes
inside, base64) before it is recorded, logged, returned or shown.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from prefect import get_run_logger
from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from flows.common.redaction import REDACTED as REDACTED
from flows.common.redaction import redact_secret
from flows.sft.parameters import SftFixerInputError
from flows.sft.settings import SftSettings
from providers.base import Provider, ProviderError, ScriptResult, SecretHandle, SecretStore

TOKEN_VARIABLE = "SFT_ENROLLMENT_TOKEN"
# The per-run parameter (or file) the flow puts a token it was given in:
# <prefix>/sft-enrollment-token/<flow run id>.
RUN_SECRET_NAME = "sft-enrollment-token"
# A real ASA enrollment token is a long opaque string; a short one is a paste mistake, and
# redacting a short string from output would also mangle ordinary words in it.
TOKEN_MIN_LENGTH = 16


class EnrollmentTokenMissingError(SftFixerInputError):
    """Install, reset or auto was asked for, and no enrollment token is configured."""


@dataclass(frozen=True)
class EnrollmentToken:
    """Where install and reset find the token: a place the operator keeps it (``kept``; the
    flow never read it), or the token the flow was given (``given``), to be put somewhere for
    the run. ``source`` says which, for a person (never the value)."""

    source: str
    kept: SecretHandle | None = None
    given: SecretStr | None = None

    @property
    def known_value(self) -> str | None:
        """The token itself when the flow holds it (to redact it from output), else None."""
        return self.given.get_secret_value() if self.given is not None else None


def enrollment_token(
    token_block: str, provider: Provider, settings: SftSettings | None = None
) -> EnrollmentToken:
    """Where the install and reset scripts will read the token, checked before anything is
    sent. Raises ``SftFixerInputError`` (never quoting a token) when there is no usable one,
    ``token_block`` is not designated for it, or ``provider`` cannot hand it to scripts."""
    settings = settings or SftSettings()
    kept = _kept_by_operator(settings)
    if kept is not None:
        if kept.store not in provider.secret_stores:
            raise SftFixerInputError(
                f"the enrollment token is kept in {kept.store.value} ({kept.name}), which the "
                f"{provider.name} provider's scripts cannot read; unset "
                "CLOUDOPS_SFT_TOKEN_PARAMETER / CLOUDOPS_SFT_TOKEN_SECRET_ID or use the aws "
                "provider. Nothing was sent."
            )
        return EnrollmentToken(source=f"{kept.store.value} {kept.name}", kept=kept)
    if not provider.secret_stores:
        raise SftFixerInputError(
            f"the {provider.name} provider cannot hand the enrollment token to its scripts "
            "without putting it in their text; use the aws or local provider. Nothing was sent."
        )
    given, where = _given_token(token_block.strip(), settings)
    return EnrollmentToken(source=where, given=given)


def _kept_by_operator(settings: SftSettings) -> SecretHandle | None:
    if settings.token_parameter:
        return SecretHandle(store=SecretStore.PARAMETER_STORE, name=settings.token_parameter)
    if settings.token_secret_id:
        return SecretHandle(store=SecretStore.SECRETS_MANAGER, name=settings.token_secret_id)
    return None


def _given_token(token_block: str, settings: SftSettings) -> tuple[SecretStr, str]:
    """The token from the designated Secret block ``token_block`` when it is saved, else from
    ``SFT_ENROLLMENT_TOKEN``; and where it came from."""
    if token_block and token_block not in settings.token_blocks:
        raise SftFixerInputError(
            f"the Prefect Secret block {token_block!r} is not designated for the SFT enrollment "
            f"token, so it was not read: only {', '.join(map(repr, settings.token_blocks))} "
            "may be used (setting CLOUDOPS_SFT_TOKEN_BLOCKS, comma separated). Nothing was sent."
        )
    where = f"Prefect Secret block {token_block!r}"
    value: object = None
    if token_block:
        try:
            # _sync: flow code is sync, even when an event loop runs underneath it.
            block = cast(Secret, Secret.load(token_block, _sync=True))  # type: ignore[call-arg]
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
            f"Secret, named {token_block!r}; or `Secret(value=...).save({token_block!r})`), set "
            f"{TOKEN_VARIABLE} for the worker, or keep it in Parameter Store and name it in "
            "CLOUDOPS_SFT_TOKEN_PARAMETER. To only look at the agent, run with action=detect. "
            "Nothing was sent."
        )
    if len(token) < TOKEN_MIN_LENGTH or any(c.isspace() or not c.isprintable() for c in token):
        raise SftFixerInputError(
            f"the enrollment token in the {where} is not a usable token ({len(token)} "
            f"characters; expected at least {TOKEN_MIN_LENGTH}, with no spaces or line "
            "breaks): copy it again from the ASA project's Enrollment tab. Nothing was sent."
        )
    return SecretStr(token), where


def script_parameters(handle: SecretHandle) -> dict[str, str]:
    """What tells the install and reset scripts where to read the token: never the token."""
    return {"SFT_TOKEN_SOURCE": handle.store.value, "SFT_TOKEN_NAME": handle.name}


@contextmanager
def token_handed_over(
    token: EnrollmentToken,
    provider: Provider,
    places: Collection[tuple[str, str]],
    flow_run_id: str,
) -> Iterator[dict[str, str]]:
    """The parameters of the scripts that need the token, while it is where they read it.

    A token the operator keeps in Parameter Store or Secrets Manager is just named. A token
    the flow was given is put, for this block only, where the scripts of ``provider`` on
    ``places`` ((account, region) pairs) read it, named after the flow run, and removed after
    the block, also when it failed (a removal that fails then is logged, never raised over
    the first failure).
    """
    logger = get_run_logger()
    if token.kept is not None:
        logger.info("install and reset read the enrollment token from %s", token.source)
        yield script_parameters(token.kept)
        return
    assert token.given is not None  # one of the two, by construction
    handle = provider.stage_secret(f"{RUN_SECRET_NAME}/{flow_run_id}", token.given, places)
    logger.info(
        "enrollment token (from the %s) put in %s %s for this run, in %d place(s)",
        token.source,
        handle.store.value,
        handle.name,
        len(handle.created_in),
    )
    done = False
    try:
        yield script_parameters(handle)
        done = True
    finally:
        try:
            provider.discard_secret(handle)
        except ProviderError as exc:
            logger.error("the enrollment token could not be removed after use: %s", exc)
            if done:
                raise
        else:
            logger.info("enrollment token removed from %s %s", handle.store.value, handle.name)


def redact(result: ScriptResult, secret: str | None) -> ScriptResult:
    """``result`` with every form of ``secret`` in its output and error replaced by ``***``
    (:func:`flows.common.redaction.redact_secret`)."""
    if not secret:
        return result
    return result.model_copy(
        update={
            "stdout": redact_secret(result.stdout, secret),
            "stderr": redact_secret(result.stderr, secret),
            "error": redact_secret(result.error, secret) if result.error else result.error,
        }
    )
