"""How a provider says it failed, and whether trying again may help."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers.models import ScriptResult


class ProviderError(Exception):
    """A provider could not do what was asked; the message says what and where.

    ``transient``: the failure may pass (throttling, a connection fault), so the same step may
    be tried again; permanent ones (access denied, invalid input) are reported at once.

    ``safe_to_repeat``: the provider knows the failed call changed nothing (AWS refused it by
    throttling it), so repeating even a call that creates something, a send, cannot run the
    script twice. After a connection fault nobody knows whether the call arrived: such an
    error is transient but not safe to repeat, and a send is then reported, not repeated.
    Reads (prepare, poll, collect) change nothing and are always safe to repeat.

    ``code``: the backend's own error code, when it gave one (``ThrottlingException``).
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        safe_to_repeat: bool = False,
        code: str | None = None,
    ):
        super().__init__(message)
        self.transient = transient
        self.safe_to_repeat = safe_to_repeat
        self.code = code


class CredentialError(ProviderError):
    """Credentials for an environment or an account could not be had, or were refused."""


class MissingCredentialsError(CredentialError):
    """No source holds credentials for an environment (as opposed to credentials refused)."""


class CollectInterrupted(ProviderError):
    """Following a command failed for good after some of its instances were final.

    ``results`` are those final results, kept: only the instances still running when the
    command could no longer be read are without one. Never transient: what could be retried
    was.
    """

    def __init__(self, message: str, results: Sequence[ScriptResult], code: str | None = None):
        super().__init__(message, code=code)
        self.results = list(results)

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect may persist a failed task's exception: keep the results through pickling.
        return (type(self), (str(self), self.results, self.code))


class SendOutcomeUnknown(ProviderError):
    """A send failed in a way that may have delivered it, and looking the command up did not
    settle whether it went out: it is neither sent again nor followed. A person checks the
    instances before running it again."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying the failed step again may help: only a ``ProviderError`` that says so.

    Anything else (a bug, a refusal, an exception no provider classified) is permanent.
    """
    return isinstance(exc, ProviderError) and exc.transient


def is_safe_to_resend(exc: BaseException) -> bool:
    """Whether a failed send may be sent again without risk of running the script twice:
    transient, and known to have changed nothing (``ProviderError.safe_to_repeat``)."""
    return is_transient(exc) and isinstance(exc, ProviderError) and exc.safe_to_repeat
