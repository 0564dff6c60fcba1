"""How AWS failures are told apart: worth retrying, or to be reported at once."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from providers.base import ProviderError

# Error codes AWS documents as throttling or as a passing fault of the service.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
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

# The credentials themselves have run out: resolve them again rather than retry as they are.
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})

_TRANSIENT_EXCEPTIONS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def is_transient(exc: BaseException) -> bool:
    """True for throttling, connection faults and expired tokens; False for everything else."""
    if isinstance(exc, AwsError):
        return exc.transient
    if isinstance(exc, _TRANSIENT_EXCEPTIONS):
        return True
    code = error_code(exc)
    return code in TRANSIENT_CODES or code in EXPIRED_CODES


def is_expired(exc: BaseException) -> bool:
    return error_code(exc) in EXPIRED_CODES


class AwsError(ProviderError):
    """An AWS call failed; ``transient`` says whether trying again may help."""

    def __init__(self, message: str, *, transient: bool = False, code: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.code = code


class CredentialError(AwsError):
    """Credentials for an environment or an account could not be had."""


class PartitionMismatchError(AwsError):
    """A target's region is not in the partition of the credentials: refused before any call."""


class MissingCredentialsError(CredentialError):
    """No source holds credentials for an environment (as opposed to credentials refused)."""
