"""What ``validate-credentials`` found per environment, as a person reads it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from flows.common.reporting import markdown_table
from flows.common.text import markdown_text
from providers.base import CredentialError, CredentialReport, MissingCredentialsError
from providers.partitions import Environment


class CheckStatus(StrEnum):
    """How the credentials of one environment fared."""

    VALID = "valid"  # STS vouched for them
    NOT_CONFIGURED = "not_configured"  # no source holds credentials for the environment
    REFUSED = "refused"  # credentials exist but AWS refused them (or they are misconfigured)


class EnvironmentCheck(BaseModel):
    """The outcome for one environment."""

    environment: Environment
    status: CheckStatus
    identity: CredentialReport | None = None
    problem: str | None = None


def classify_credentials(
    environment: Environment, resolve: Callable[[], CredentialReport]
) -> EnvironmentCheck:
    """The outcome for one environment from ``resolve`` (which resolves its credentials and
    asks STS who they are): missing and refused credentials are outcomes, not exceptions.

    The flow resolves through a retrying Prefect task; ``cloudops doctor`` calls the provider
    directly. Messages of both errors name the environment and source, never the secret.
    """
    try:
        identity = resolve()
    except MissingCredentialsError as exc:
        return EnvironmentCheck(
            environment=environment, status=CheckStatus.NOT_CONFIGURED, problem=str(exc)
        )
    except CredentialError as exc:
        return EnvironmentCheck(
            environment=environment, status=CheckStatus.REFUSED, problem=str(exc)
        )
    return EnvironmentCheck(environment=environment, status=CheckStatus.VALID, identity=identity)


class CredentialValidation(BaseModel):
    """What ``validate-credentials`` returns."""

    provider: str
    checks: list[EnvironmentCheck]
    report_path: str = Field(default="", description="path of the markdown report file")

    @property
    def refused(self) -> list[EnvironmentCheck]:
        return [c for c in self.checks if c.status is CheckStatus.REFUSED]

    @property
    def valid(self) -> list[EnvironmentCheck]:
        return [c for c in self.checks if c.status is CheckStatus.VALID]

    @property
    def needs_attention(self) -> bool:
        """An environment asked for has no credentials at all."""
        return any(c.status is CheckStatus.NOT_CONFIGURED for c in self.checks)

    def outcome(self) -> str:
        """One line for the run's final state: each environment and its status."""
        return ", ".join(f"{c.environment.value} {c.status.value}" for c in self.checks)


def check_rows(checks: Sequence[EnvironmentCheck]) -> list[dict[str, str]]:
    """One row per environment: who, from where, until when, or what is wrong."""
    rows = []
    for check in checks:
        ident = check.identity
        rows.append(
            {
                "environment": check.environment.value,
                "status": check.status.value,
                "account": ident.account_id if ident else "",
                "ARN": ident.arn if ident else "",
                "partition": ident.partition if ident else "",
                "source": ident.source.value if ident else "",
                "expiry": ident.expiry.isoformat() if ident and ident.expiry else "",
                "problem": check.problem or "",
            }
        )
    return rows


def summary_markdown(result: CredentialValidation, checked_at: datetime) -> str:
    """The report: one line of verdict, then the table."""
    return (
        f"# Credential check ({markdown_text(result.provider)})\n\n"
        f"Checked {len(result.checks)} environment(s) at {checked_at:%Y-%m-%d %H:%M:%S} UTC: "
        f"{len(result.valid)} valid, {len(result.refused)} refused.\n\n"
        + markdown_table(check_rows(result.checks))
    )
