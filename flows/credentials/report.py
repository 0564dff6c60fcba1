"""What ``validate-credentials`` found per environment, as a person reads it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from flows.common.reporting import markdown_table
from flows.common.text import markdown_text
from providers.base import CredentialReport
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
