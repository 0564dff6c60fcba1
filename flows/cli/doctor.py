"""``cloudops doctor``: is this machine set up to run the flows? One line per check, and what
to do about each one that fails.

Checks, in order: the Prefect API (which one, and that it answers); the provider block types
registered there; the work pool, its workers and deployments; every saved provider block
(loaded, so validated, and built); the credentials of each environment (the validate-credentials
logic, called directly, never printing a secret); the record store (reachable, migrated); the
reports directory and the reports destination (written to). Exit 1 when any check fails; a
warning (no worker online, an environment without credentials) does not fail.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import httpx
import typer
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import WorkerStatus
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL
from pydantic import BaseModel, ValidationError
from rich.text import Text

from blocks import ProviderBlock, registered_providers, saved_block_slugs
from blocks.aws import AwsProviderBlock, aws_provider_from_environment
from flows.cli.console import handles_expected_failures, safe, stderr, stdout
from flows.common.report_copies import (
    ReportDestinationError,
    named_destination,
    write_copy,
)
from flows.common.settings import get_settings
from flows.credentials.report import CheckStatus, classify_credentials
from flows.store.database import (
    StoreError,
    create_store_engine,
    current_revision,
    describe_url,
    head_revision,
)
from providers.base import CredentialReport, Provider
from providers.destinations import ReportDestination
from providers.partitions import Environment

DEFAULT_POOL = "cloudops"
API_TIMEOUT_SECONDS = 10
PROBE_NAME = "cloudops-doctor.txt"


class Outcome(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


_STYLE = {
    Outcome.PASS: "bold green",
    Outcome.WARN: "bold yellow",
    Outcome.FAIL: "bold red",
    Outcome.SKIP: "dim",
}


class Check(BaseModel):
    """One check's outcome: what was checked, what was found, what to do."""

    name: str
    outcome: Outcome
    detail: str
    fix: str | None = None


class LoadedBlock(BaseModel, arbitrary_types_allowed=True):
    """A saved provider block that loaded, with the provider built from it."""

    slug: str
    block: ProviderBlock
    provider: Provider


# -- Prefect ------------------------------------------------------------------------------------


def check_prefect_api() -> Check:
    """``PREFECT_API_URL`` is set and its ``/health`` answers (quickly: no client retries)."""
    url = PREFECT_API_URL.value()
    if not url:
        return Check(
            name="Prefect API",
            outcome=Outcome.FAIL,
            detail="PREFECT_API_URL is not set: flows and this command would use a temporary "
            "server of their own",
            fix="export PREFECT_API_URL=http://<prefect-server>:4200/api (or log in to Prefect "
            "Cloud with `prefect cloud login`)",
        )
    key = PREFECT_API_KEY.value()
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    try:
        response = httpx.get(
            f"{str(url).rstrip('/')}/health", headers=headers, timeout=API_TIMEOUT_SECONDS
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return Check(
            name="Prefect API",
            outcome=Outcome.FAIL,
            detail=f"{url} does not answer: {type(exc).__name__}: {exc}",
            fix="start it (`prefect server start`) or correct PREFECT_API_URL",
        )
    with get_client(sync_client=True) as client:
        version = client.api_version()
    return Check(name="Prefect API", outcome=Outcome.PASS, detail=f"{url} (server {version})")


def check_block_types(client: SyncPrefectClient) -> list[Check]:
    """Every provider block type this package registers is known to the server."""
    checks = []
    for registration in registered_providers().values():
        if registration.block_type is None:
            continue
        slug = registration.block_type.get_block_type_slug()
        try:
            client.read_block_type_by_slug(slug)
        except ObjectNotFound:
            checks.append(
                Check(
                    name=f"block type {slug}",
                    outcome=Outcome.FAIL,
                    detail="not registered on the server",
                    fix="prefect block register -m blocks",
                )
            )
            continue
        checks.append(Check(name=f"block type {slug}", outcome=Outcome.PASS, detail="registered"))
    return checks


def check_work_pool(client: SyncPrefectClient, pool: str) -> list[Check]:
    """The work pool exists, a worker polls it, and deployments use it."""
    try:
        found = client.read_work_pool(pool)
    except ObjectNotFound:
        return [
            Check(
                name=f"work pool {pool}",
                outcome=Outcome.FAIL,
                detail="no such work pool",
                fix=f"prefect work-pool create {pool} --type process, then prefect deploy --all",
            )
        ]
    checks = [Check(name=f"work pool {pool}", outcome=Outcome.PASS, detail=f"type {found.type}")]
    workers = client.read_workers_for_work_pool(pool)
    online = [w.name for w in workers if w.status == WorkerStatus.ONLINE]
    checks.append(
        Check(
            name="workers",
            outcome=Outcome.PASS if online else Outcome.WARN,
            detail=(
                f"{len(online)} online: {', '.join(online)}"
                if online
                else "none online; " "runs wait in the pool until one polls it"
            ),
            fix=None if online else f"prefect worker start --pool {pool} (on each worker machine)",
        )
    )
    deployments = [d for d in client.read_deployments() if d.work_pool_name == pool]
    checks.append(
        Check(
            name="deployments",
            outcome=Outcome.PASS if deployments else Outcome.FAIL,
            detail=f"{len(deployments)} on pool {pool}" if deployments else f"none on pool {pool}",
            fix=None if deployments else "prefect deploy --all (from the checkout)",
        )
    )
    return checks


def check_provider_blocks() -> tuple[list[Check], list[LoadedBlock]]:
    """Every saved provider block loads (which validates it) and builds its provider."""
    checks: list[Check] = []
    loaded: list[LoadedBlock] = []
    types = {
        r.block_type.get_block_type_slug(): r.block_type
        for r in registered_providers().values()
        if r.block_type is not None
    }
    slugs = saved_block_slugs()
    for slug in slugs:
        type_slug, _, name = slug.partition("/")
        try:
            block = types[type_slug].load(name, _sync=True)  # type: ignore[call-arg]
            assert isinstance(block, ProviderBlock)
            provider = block.build_provider()
        except Exception as exc:  # a block saved by another release, or a broken one
            checks.append(
                Check(
                    name=f"block {slug}",
                    outcome=Outcome.FAIL,
                    detail=f"cannot be used: {_block_problem(exc)}",
                    fix=f"edit it in the UI (Blocks → {slug}) or save it again",
                )
            )
            continue
        loaded.append(LoadedBlock(slug=slug, block=block, provider=provider))
        checks.append(Check(name=f"block {slug}", outcome=Outcome.PASS, detail="loads and builds"))
    if not slugs:
        checks.append(
            Check(
                name="provider blocks",
                outcome=Outcome.PASS,
                detail="none saved: flows use DEFAULT_PROVIDER, and `aws` the legacy variables",
            )
        )
    return checks, loaded


# -- credentials, store, reports ------------------------------------------------------------------


def check_credentials(loaded: list[LoadedBlock]) -> list[Check]:
    """The credentials of each environment, as validate-credentials would report them: per
    saved AWS block (its environment), else from the legacy variables for com and gov."""
    aws_blocks = [b for b in loaded if isinstance(b.block, AwsProviderBlock)]
    targets: list[tuple[str, Provider, Environment]] = [
        (b.slug, b.provider, Environment(b.block.environment))
        for b in aws_blocks
        if isinstance(b.block, AwsProviderBlock)
    ]
    if not aws_blocks:
        from_environment: Provider = aws_provider_from_environment()
        targets = [("no block", from_environment, env) for env in Environment]
    checks = []
    for source, provider, environment in targets:
        checked = classify_credentials(environment, _resolver(provider, environment))
        name = f"credentials {environment.value} ({source})"
        if checked.status is CheckStatus.VALID and checked.identity is not None:
            ident = checked.identity
            expiry = f", expires {ident.expiry:%Y-%m-%d %H:%M UTC}" if ident.expiry else ""
            checks.append(
                Check(
                    name=name,
                    outcome=Outcome.PASS,
                    detail=f"{ident.arn} from {ident.source.value}{expiry}",
                )
            )
        elif checked.status is CheckStatus.NOT_CONFIGURED:
            # The provider's message says what it tried, then how to give credentials.
            tried, _, how = (checked.problem or "").partition(". To give")
            checks.append(
                Check(
                    name=name,
                    outcome=Outcome.WARN,
                    detail=f"not configured: {tried}",
                    fix=(f"To give{how}" if how else "set this environment's credentials")
                    + " Ignore this if the environment is not used from here.",
                )
            )
        else:
            checks.append(
                Check(
                    name=name,
                    outcome=Outcome.FAIL,
                    detail=f"refused: {checked.problem}",
                    fix="renew or correct these credentials (see SECURITY.md for permissions)",
                )
            )
    return checks


def _resolver(provider: Provider, environment: Environment) -> Callable[[], CredentialReport]:
    return lambda: provider.validate_credentials(environment)


def check_store() -> Check:
    """The record store answers and its schema is the one this release writes."""
    url = get_settings().database_url
    where = describe_url(url)
    try:
        engine = create_store_engine(url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        return Check(
            name="record store", outcome=Outcome.FAIL, detail=str(exc), fix="check DATABASE_URL"
        )
    head = head_revision()
    if current == head:
        return Check(name="record store", outcome=Outcome.PASS, detail=f"{where} at {current}")
    if current is None:
        return Check(
            name="record store",
            outcome=Outcome.WARN,
            detail=f"{where} reachable, not migrated yet (flows migrate it on first use)",
            fix="python -m flows.store upgrade, to migrate it now",
        )
    return Check(
        name="record store",
        outcome=Outcome.FAIL,
        detail=f"{where} at schema revision {current}, this release writes {head}",
        fix="python -m flows.store upgrade (or upgrade cloudops-flows if the database is newer)",
    )


def check_reports(loaded: list[LoadedBlock]) -> list[Check]:
    """The local reports directory and the reports destination take a file."""
    checks = [_local_reports()]
    destinations: list[tuple[str, Provider | None]] = []
    if named_destination() is not None:
        destinations.append(("CLOUDOPS_REPORTS_DESTINATION", None))
    else:
        destinations += [
            (f"{b.slug} reports destination", b.provider)
            for b in loaded
            if isinstance(b.block, AwsProviderBlock) and b.block.reports_destination
        ]
    for source, provider in destinations:
        checks.append(_destination(source, provider))
    if len(checks) == 1:
        checks.append(
            Check(
                name="reports destination",
                outcome=Outcome.PASS,
                detail="none named: reports stay on the worker that ran the flow",
            )
        )
    return checks


def _local_reports() -> Check:
    directory = get_settings().reports_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".cloudops-doctor-"):
            pass
    except OSError as exc:
        return Check(
            name="reports directory",
            outcome=Outcome.FAIL,
            detail=f"{directory}: {exc.strerror or exc}",
            fix="make it writable, or set CLOUDOPS_REPORTS_DIR",
        )
    return Check(name="reports directory", outcome=Outcome.PASS, detail=f"{directory} writable")


def _destination(source: str, provider: Provider | None) -> Check:
    named = named_destination(provider)
    assert named is not None
    try:
        destination = ReportDestination.parse(named[0])
        copy = write_copy(
            destination,
            destination.key_for(PROBE_NAME),
            f"written by cloudops doctor on {socket.gethostname()} at "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n".encode(),
            provider,
            content_type="text/plain; charset=utf-8",
        )
    except (ValueError, ReportDestinationError) as exc:
        return Check(
            name="reports destination",
            outcome=Outcome.FAIL,
            detail=f"{source}: {_first_line(exc)}",
            fix="correct it, or give this worker write access there",
        )
    return Check(
        name="reports destination",
        outcome=Outcome.PASS,
        detail=f"{source}: wrote {copy.location}",
    )


def _block_problem(exc: BaseException) -> str:
    """What is wrong with a saved block: its fields that no longer validate, if that is it.

    Prefect wraps the validation error of a block it loads; the fields are what to fix. The
    input values are left out: a field may hold a secret.
    """
    cause = exc.__cause__ if isinstance(exc.__cause__, ValidationError) else exc
    if isinstance(cause, ValidationError):
        return "does not validate: " + "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'block'}: {error['msg']}"
            for error in cause.errors()
        )
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- the command --------------------------------------------------------------------------------


def _print(check: Check) -> None:
    line = Text(f"{check.outcome.value.upper():<5} ", style=_STYLE[check.outcome])
    line += Text(f"{check.name}: ", style="bold") + safe(check.detail)
    # One line per check, however long: the terminal wraps it, and it copies and greps whole.
    stdout().print(line, soft_wrap=True)
    if check.fix and check.outcome is not Outcome.PASS:
        stdout().print(Text("      → ") + safe(check.fix), soft_wrap=True)


@contextmanager
def _checking(what: str) -> Iterator[None]:
    with stderr().status(Text(f"Checking {what}…")):
        yield


def _skipped(names: list[str]) -> list[Check]:
    return [
        Check(name=name, outcome=Outcome.SKIP, detail="not checked: no Prefect API")
        for name in names
    ]


@handles_expected_failures
def doctor(
    pool: Annotated[str, typer.Option(help="The work pool the deployments use.")] = DEFAULT_POOL,
) -> None:
    """Check this machine's set-up: Prefect API, block types, work pool, provider blocks,
    credentials per environment, record store, reports destination. Exit 1 when a check fails."""
    checks: list[Check] = []

    def run(what: str, step: Callable[[], list[Check]]) -> None:
        with _checking(what):
            found = step()
        for check in found:
            _print(check)
        checks.extend(found)

    run("the Prefect API", lambda: [check_prefect_api()])
    loaded: list[LoadedBlock] = []
    if checks[-1].outcome is Outcome.PASS:
        with get_client(sync_client=True) as client:
            run("block types", lambda: check_block_types(client))
            run(f"work pool {pool}", lambda: check_work_pool(client, pool))

        def blocks_step() -> list[Check]:
            found, ok = check_provider_blocks()
            loaded.extend(ok)
            return found

        run("provider blocks", blocks_step)
    else:
        run("Prefect objects", lambda: _skipped(["block types", "work pool", "provider blocks"]))
    run("credentials", lambda: check_credentials(loaded))
    run("the record store", lambda: [check_store()])
    run("reports", lambda: check_reports(loaded))

    failed = sum(c.outcome is Outcome.FAIL for c in checks)
    warned = sum(c.outcome is Outcome.WARN for c in checks)
    passed = sum(c.outcome is Outcome.PASS for c in checks)
    stdout().print(safe(f"{passed} passed, {warned} warning(s), {failed} failed"))
    if failed:
        raise typer.Exit(1)
