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

from blocks import load_provider
from flows.common.engine import TRANSIENT_RETRIES
from flows.common.naming import final_state, run_namer, run_title
from flows.common.reporting import artifact_key, utc_stamp
from flows.common.runs import RunReport, Table, Tally, WorkflowRun
from flows.credentials.report import (
    CredentialValidation,
    EnvironmentCheck,
    check_rows,
    classify_credentials,
    summary_markdown,
)
from flows.store import Store
from providers.base import CredentialReport, Provider
from providers.partitions import Environment

WORKFLOW = "validate-credentials"


class CredentialsRefusedError(RuntimeError):
    """At least one environment has credentials that AWS does not accept."""


@task(name="resolve-credentials", task_run_name="resolve-{environment}", **TRANSIENT_RETRIES)
def resolve_credentials(provider: Provider, environment: Environment) -> CredentialReport:
    """Resolve the credentials of ``environment`` and confirm them with STS."""
    return provider.validate_credentials(environment)


def check_environment(provider: Provider, environment: Environment) -> EnvironmentCheck:
    """The outcome for one environment; a refusal is an outcome, not an exception."""
    return classify_credentials(environment, lambda: resolve_credentials(provider, environment))


def log_check(check: EnvironmentCheck) -> None:
    detail = (
        f" as {check.identity.arn} (from {check.identity.source.value})"
        if check.identity
        else f": {check.problem}"
    )
    get_run_logger().info("%s: %s%s", check.environment.value, check.status.value, detail)


@flow(
    name=WORKFLOW,
    log_prints=False,
    flow_run_name=run_namer(
        lambda p: run_title("credentials", *(str(e) for e in p.get("environments") or []))
    ),
)
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
    chosen = load_provider(provider)
    run = WorkflowRun.begin(WORKFLOW, chosen, Store.default(), change=None)
    run_id = run.start_step("validate")
    started = datetime.now(UTC)

    checks = [check_environment(chosen, Environment(env)) for env in dict.fromkeys(environments)]
    for check in checks:
        log_check(check)

    result = CredentialValidation(provider=chosen.name, checks=checks)
    run.finish_step(run_id, Tally(len(result.valid), len(checks) - len(result.valid)))
    summary = summary_markdown(result, started)
    report = run.publish(
        RunReport(
            filename=f"credentials_{chosen.name}_{utc_stamp(started)}.md",
            markdown=summary,
            summary_key=artifact_key("credentials-summary"),
            summary_description="Credential check summary",
            tables=[
                Table(
                    artifact_key("credentials", chosen.name),
                    check_rows(checks),
                    "Credentials per environment (the secret itself is never shown)",
                    empty="No environment was asked for.",
                )
            ],
        )
    )
    result = result.model_copy(update={"report_path": str(report)})
    if result.refused:
        names = ", ".join(c.environment.value for c in result.refused)
        raise CredentialsRefusedError(
            f"credentials refused for: {names} (see the run's artifacts and {report})"
        )
    return final_state(result, result.outcome(), result.needs_attention)
