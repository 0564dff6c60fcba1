"""Flow ``validate-credentials``: who do we act as in each environment, and until when?

Per environment: resolve credentials (a retryable task), ask STS who they belong to, and
report account, ARN, partition, source and expiry. The secret itself is never shown, logged,
returned or stored. An environment with no credentials is reported as such; one whose
credentials are refused fails the run (after its report is written) so a scheduled check
alerts someone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks import load_provider
from flows.execution import TRANSIENT_RETRIES
from flows.reporting import artifact_key, markdown_table, publish_markdown
from flows.store import Store
from providers.aws.errors import CredentialError, MissingCredentialsError
from providers.base import CredentialReport, Provider
from providers.partitions import Environment


class EnvironmentCheck(BaseModel):
    """The outcome for one environment."""

    environment: Environment
    status: str = Field(description="valid, not_configured or refused")
    identity: CredentialReport | None = None
    problem: str | None = None


class CredentialValidation(BaseModel):
    """What ``validate-credentials`` returns."""

    provider: str
    checks: list[EnvironmentCheck]

    @property
    def refused(self) -> list[EnvironmentCheck]:
        return [c for c in self.checks if c.status == "refused"]


class CredentialsRefusedError(RuntimeError):
    """At least one environment has credentials that AWS does not accept."""


@task(name="resolve-credentials", task_run_name="resolve-{environment}", **TRANSIENT_RETRIES)
def resolve_credentials(provider: Provider, environment: Environment) -> CredentialReport:
    """Resolve the credentials of ``environment`` and confirm them with STS."""
    return provider.validate_credentials(environment)


def check_environment(provider: Provider, environment: Environment) -> EnvironmentCheck:
    try:
        identity = resolve_credentials(provider, environment)
    except MissingCredentialsError as exc:
        return EnvironmentCheck(environment=environment, status="not_configured", problem=str(exc))
    except CredentialError as exc:
        return EnvironmentCheck(environment=environment, status="refused", problem=str(exc))
    return EnvironmentCheck(environment=environment, status="valid", identity=identity)


def _rows(checks: list[EnvironmentCheck]) -> list[dict[str, str]]:
    rows = []
    for check in checks:
        ident = check.identity
        rows.append(
            {
                "environment": check.environment.value,
                "status": check.status,
                "account": ident.account_id if ident else "",
                "ARN": ident.arn if ident else "",
                "partition": ident.partition if ident else "",
                "source": ident.source.value if ident else "",
                "expiry": ident.expiry.isoformat() if ident and ident.expiry else "",
                "problem": check.problem or "",
            }
        )
    return rows


@flow(name="validate-credentials", log_prints=False)
def validate_credentials(
    environments: list[Environment] = [Environment.COM, Environment.GOV],  # noqa: B006
    provider: str | None = None,
) -> CredentialValidation:
    """Check the credentials of each environment: account, ARN, partition, source, expiry.

    Args:
        environments: ``com`` (AWS Commercial) and/or ``gov`` (AWS GovCloud).
        provider: a provider block slug (``aws-provider/prod``), block name, or ``aws``/``local``;
            empty for the ``DEFAULT_PROVIDER`` setting.
    """
    logger = get_run_logger()
    chosen = load_provider(provider)
    store = Store.default()
    run_id = store.start_run(
        flow_run_id=str(flow_run.id or ""),
        workflow="validate-credentials",
        step="validate",
        provider=chosen.name,
        change_number=None,
    )
    started = datetime.now(UTC)

    checks = [check_environment(chosen, Environment(env)) for env in dict.fromkeys(environments)]
    for check in checks:
        logger.info(
            "%s: %s%s",
            check.environment.value,
            check.status,
            (
                f" as {check.identity.arn} (from {check.identity.source.value})"
                if check.identity
                else f": {check.problem}"
            ),
        )

    rows = _rows(checks)
    create_table_artifact(
        key=artifact_key("credentials", chosen.name),
        table=rows,
        description="Credentials per environment (the secret itself is never shown)",
    )
    summary = (
        f"# Credential check ({chosen.name})\n\n"
        f"Checked {len(checks)} environment(s) at {started:%Y-%m-%d %H:%M:%S} UTC.\n\n"
        + markdown_table(rows)
    )
    publish_markdown(artifact_key("credentials-summary"), summary, "Credential check summary")

    result = CredentialValidation(provider=chosen.name, checks=checks)
    valid = sum(1 for c in checks if c.status == "valid")
    store.finish_run(
        run_id,
        status="failed" if result.refused else "completed",
        success_count=valid,
        failure_count=len(checks) - valid,
    )
    if result.refused:
        names = ", ".join(c.environment.value for c in result.refused)
        raise CredentialsRefusedError(f"credentials refused for: {names} (see the run's artifacts)")
    return result
