"""How AWS failures are told apart: worth retrying, or to be reported at once.

Only this package reads botocore's exceptions: what it raises is an ``AwsError``, a
``providers.base.ProviderError`` whose ``transient`` and ``safe_to_repeat`` say what the rest
of the code needs to know (``providers.base.is_transient``).
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from providers import base

# Error codes AWS documents as throttling: the request was refused before it did anything.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)

# Codes of a passing fault of the service: worth retrying, but the request may have been
# (partly) carried out, so a call that creates something is not simply repeated.
SERVICE_FAULT_CODES = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
    }
)

TRANSIENT_CODES = THROTTLING_CODES | SERVICE_FAULT_CODES

# The credentials themselves have run out: resolve them again rather than retry as they are.
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})

_TRANSIENT_EXCEPTIONS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError`` (``ThrottlingException``), else None."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def is_transient_fault(exc: BaseException) -> bool:
    """True for throttling, passing service faults, connection faults and expired tokens;
    False for everything else. A ``ProviderError`` says so itself."""
    if isinstance(exc, base.ProviderError):
        return exc.transient
    if isinstance(exc, _TRANSIENT_EXCEPTIONS):
        return True
    code = error_code(exc)
    return code in TRANSIENT_CODES or code in EXPIRED_CODES


def is_expired(exc: BaseException) -> bool:
    """AWS refused the credentials as expired."""
    return error_code(exc) in EXPIRED_CODES


def is_throttled(exc: BaseException) -> bool:
    """AWS refused the call by throttling it, so it did nothing and may be repeated."""
    return error_code(exc) in THROTTLING_CODES


class AwsError(base.ProviderError):
    """An AWS call failed; ``transient`` says whether trying again may help."""


class CredentialError(AwsError, base.CredentialError):
    """Credentials for an environment or an account could not be had.

    Resolving credentials (STS GetCallerIdentity, AssumeRole) changes nothing anywhere and
    comes before the call that needed them, so the step that failed on them is always safe to
    repeat: a send that failed here sent nothing.
    """

    def __init__(self, message: str, *, transient: bool = False, code: str | None = None):
        super().__init__(message, transient=transient, safe_to_repeat=True, code=code)


class PartitionMismatchError(AwsError):
    """A target's region is not in the partition of the credentials: refused before any call."""


class MissingCredentialsError(CredentialError, base.MissingCredentialsError):
    """No source holds credentials for an environment (as opposed to credentials refused)."""
