"""The AWS provider: credentials, SSM pre-check, send and poll, and discovery behind one
``Provider``.

Each step works on one (account, region) at a time with clients built from the credentials
the resolver gives for that pair (the caller's own, or an assumed role). Failures become
``AwsError``: ``transient`` ones (throttling past botocore's retries, connection faults) are
raised so that whoever runs the step (``providers.engine``, a Prefect task) tries it again;
permanent ones become ``error`` results for the targets they concern, never for their
neighbours. A throttled call is also ``safe_to_repeat`` (AWS refused it, it did nothing); a
connection fault is not, since the call may have arrived, so a send is repeated after one only
once ``find_sent`` found no command of that chunk in SSM's history.

``SendCommand`` goes through a client botocore never retries (``single_attempt``): botocore
would retry a connection fault that lost the answer and run the script twice. This provider
retries a throttled send itself, which is safe: AWS refused it before doing anything.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

import boto3
import botocore.loaders
import botocore.session
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from providers.aws import discovery, precheck
from providers.aws.clients import ServiceName, make_client
from providers.aws.config import AwsProviderConfig
from providers.aws.credentials import CredentialResolver, ResolvedCredentials
from providers.aws.errors import (
    THROTTLING_CODES,
    TRANSIENT_CODES,
    AwsError,
    error_code,
    is_expired,
    is_throttled,
    is_transient_fault,
)
from providers.aws.precheck import (
    ManagedInstance,
    check_registration,
    describe_managed_instances,
    validate_targets,
)
from providers.aws.secrets import delete_parameter, parameter_name, put_secure_parameter
from providers.aws.settings import LegacyCredentials
from providers.aws.ssm import (
    cancel_invocations,
    chunk_targets,
    expired_results,
    find_sent_command,
    poll_invocations,
    send_command_chunk,
)
from providers.base import (
    Account,
    Chunk,
    CommandProgress,
    CommandRef,
    CredentialReport,
    DiscoveryFilter,
    Instance,
    Plan,
    PollSchedule,
    Provider,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    SecretHandle,
    SecretStore,
    Target,
)
from providers.partitions import (
    Environment,
    environment_of_region,
    partition_for,
    region_problem,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_organizations import OrganizationsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient

T = TypeVar("T")

# A boto3 session parses its service models on first use: about 10 MB and 0.1 s for SSM and
# STS, per session. One loader shared by every session parses each model once per process, so
# a run over many (account, region) pairs does not pay that once per pair.
_SHARED_LOADER = botocore.loaders.create_loader()
_CLIENT_BUILD_LOCK = threading.Lock()

# SSM's history may not list a command the very moment it was accepted: a lookup for one whose
# send may have gone out waits until this long after that send began.
SEND_LOOKUP_SETTLE = timedelta(seconds=5)
# Waits between attempts of a throttled SendCommand: full jitter up to a growing ceiling.
_THROTTLED_SEND_BASE_SECONDS = 0.25
_THROTTLED_SEND_MAX_SECONDS = 20.0


def _session_for(credentials: ResolvedCredentials, region: str) -> boto3.session.Session:
    """A boto3 session acting with ``credentials`` in ``region``, on the shared model loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _SHARED_LOADER)
    token = credentials.session_token
    return boto3.session.Session(
        aws_access_key_id=credentials.access_key_id.get_secret_value(),
        aws_secret_access_key=credentials.secret_access_key.get_secret_value(),
        aws_session_token=token.get_secret_value() if token else None,
        region_name=region,
        botocore_session=core,
    )


class _Clients:
    """Clients of one (account, region), built on first use from the provider's cache."""

    def __init__(self, provider: AwsProvider, region: str, account_id: str | None):
        self._provider = provider
        self.region = region
        self.account_id = account_id

    def _get(self, service: ServiceName, *, single_attempt: bool = False) -> BaseClient:
        return self._provider._client(
            service, self.region, self.account_id, single_attempt=single_attempt
        )

    # The cache holds clients of several services; each is built for the service its
    # property names, which is what the casts state.
    @property
    def ssm(self) -> SSMClient:
        return cast("SSMClient", self._get("ssm"))

    @property
    def ssm_send(self) -> SSMClient:
        """An SSM client botocore never retries: for ``SendCommand`` only."""
        return cast("SSMClient", self._get("ssm", single_attempt=True))

    @property
    def s3(self) -> S3Client:
        return cast("S3Client", self._get("s3"))

    @property
    def ec2(self) -> EC2Client:
        return cast("EC2Client", self._get("ec2"))

    @property
    def organizations(self) -> OrganizationsClient:
        return cast("OrganizationsClient", self._get("organizations"))


class AwsProvider(Provider):
    """Runs scripts on EC2 instances through SSM Run Command, across accounts and regions.

    >>> provider = AwsProvider(AwsProviderConfig(environment="gov"))
    >>> provider.execute_script_batch(targets, "uname -r").status
    """

    name: ClassVar[str] = "aws"
    reboots_through_agent: ClassVar[bool] = True

    def api_budget(self, account_id: str, region: str) -> str | None:
        """``ssm-<account>-<region>``: AWS rate-limits SSM calls per account and region."""
        return f"ssm-{account_id}-{region}"

    def __init__(
        self,
        config: AwsProviderConfig | None = None,
        *,
        resolver: CredentialResolver | None = None,
        legacy: LegacyCredentials | None = None,
    ):
        self.config = config or AwsProviderConfig()
        self.resolver = resolver or CredentialResolver(self.config, legacy=legacy)
        self._clients: dict[tuple[str, str, str | None, datetime | None, bool], BaseClient] = {}
        self._lock = threading.Lock()

    @property
    def max_concurrent_groups(self) -> int:
        """The block's setting: how many steps of a run go on at once."""
        return self.config.max_concurrent_groups

    def target_problem(self, target: Target) -> str | None:
        """Why ``target`` is no EC2 instance of a known region and account, or None."""
        return precheck.target_problem(target)

    def region_problem(self, region: str, where: str) -> str | None:
        """Why ``region`` is not one of AWS Commercial or GovCloud (China, ISO, unknown)."""
        return region_problem(region, where)

    # -- clients and errors ---------------------------------------------------------------

    def _client(
        self,
        service: ServiceName,
        region: str,
        account_id: str | None,
        *,
        single_attempt: bool = False,
    ) -> BaseClient:
        credentials = self.resolver.credentials_for(region, account_id)
        # Keyed by expiry as well, so a refreshed role session gets a fresh client.
        key = (service, region, account_id, credentials.expiry, single_attempt)
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            with _CLIENT_BUILD_LOCK:
                client = make_client(
                    _session_for(credentials, region),
                    service,
                    region,
                    self.config,
                    single_attempt=single_attempt,
                )
            with self._lock:
                client = self._clients.setdefault(key, client)
        return client

    def _forget_clients(self, environment: Environment) -> None:
        with self._lock:
            for key in [k for k in self._clients if environment_of_region(k[1]) is environment]:
                del self._clients[key]

    def _call(
        self, region: str, account_id: str | None, what: str, step: Callable[[_Clients], T]
    ) -> T:
        """Run ``step`` with the clients of (account, region).

        Expired credentials are resolved again and the step is run once more; any other AWS
        failure becomes an ``AwsError`` naming ``what`` and where.
        """
        clients = _Clients(self, region, account_id)
        with self._aws_errors(what, region, account_id):
            try:
                return step(clients)
            except ClientError as exc:
                if not is_expired(exc):
                    raise
                environment = environment_of_region(region)
                self.resolver.invalidate(environment)
                self._forget_clients(environment)
                return step(clients)

    @contextmanager
    def _aws_errors(self, what: str, region: str, account_id: str | None) -> Iterator[None]:
        where = f"account {account_id or '(caller)'} region {region}"
        try:
            yield
        except AwsError:
            raise
        except ClientError as exc:
            code = error_code(exc) or "ClientError"
            message = exc.response.get("Error", {}).get("Message", "")
            hint = _hint_for(code)
            raise AwsError(
                f"{what} failed in {where}: {code}: {message}{hint}",
                transient=is_transient_fault(exc),
                # AWS refused it before doing anything: repeating it cannot do anything twice.
                safe_to_repeat=is_throttled(exc) or is_expired(exc),
                code=code,
            ) from exc
        except BotoCoreError as exc:
            # A connection fault: the call may have arrived, so it is not safe to repeat.
            raise AwsError(
                f"{what} failed in {where}: {exc}", transient=is_transient_fault(exc)
            ) from exc

    # -- identity and discovery -----------------------------------------------------------

    def validate_credentials(self, environment: Environment | None = None) -> CredentialReport:
        """Who this provider acts as in ``environment`` (its home environment when None)."""
        return self.resolver.report(environment or self.config.environment)

    def poll_schedule(self) -> PollSchedule:
        return self.config.poll

    # -- report copies --------------------------------------------------------------------

    def put_object(
        self, bucket: str, key: str, body: bytes, content_type: str = "text/markdown"
    ) -> str:
        """Write ``body`` to ``s3://bucket/key`` with the caller's own credentials of the home
        environment (never an assumed role); returns the console URL of the object.

        Raises ``AwsError`` naming the bucket, key and what AWS said (``AccessDenied``,
        ``NoSuchBucket``...).
        """
        region = self.config.home_region

        def put(clients: _Clients) -> None:
            clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)

        self._call(region, None, f"PutObject s3://{bucket}/{key}", put)
        return partition_for(self.config.environment).s3_console_url(bucket, key, region)

    def enumerate_regions(self) -> list[str]:
        """Regions enabled for the caller in the home environment's partition."""
        environment = self.config.environment
        region = partition_for(environment).default_region
        return self._call(
            region,
            None,
            "DescribeRegions",
            lambda c: discovery.enumerate_regions(c.ec2, environment),
        )

    def enumerate_accounts(self) -> list[Account]:
        """Accounts of the home environment's organization, or the caller's own account."""
        environment = self.config.environment
        region = partition_for(environment).default_region
        return self._call(
            region,
            None,
            "ListAccounts",
            lambda c: discovery.enumerate_accounts(
                c.organizations,
                environment,
                own_account=lambda: self.resolver.resolve(environment).account_id,
            ),
        )

    def discover_instances(self, filters: DiscoveryFilter) -> list[Instance]:
        """Instances matching ``filters`` in every requested account and region."""
        if filters.regions:
            regions, where = list(filters.regions), "discovery.regions"
        else:
            regions, where = list(self.config.default_regions), "default_regions of the block"
        problems = [
            problem
            for index, region in enumerate(regions)
            if (problem := region_problem(region, f"{where}[{index}]")) is not None
        ]
        if problems:
            raise AwsError("; ".join(problems), code="UnknownRegion")
        if not regions:
            regions = [partition_for(self.config.environment).default_region]
        accounts: list[str | None] = list(filters.accounts) or [None]
        places = [(account, region) for account in accounts for region in regions]

        def look(place: tuple[str | None, str]) -> list[Instance]:
            account, region = place
            owner = account or self.resolver.resolve(environment_of_region(region)).account_id
            return self._call(
                region,
                account,
                "DescribeInstances",
                lambda c: discovery.discover_instances(c.ec2, c.ssm, owner, region, filters),
            )

        workers = min(len(places), self.config.max_concurrent_groups)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = [i for part in pool.map(look, places) for i in part]
        return sorted(found, key=lambda i: (i.account_id, i.region, i.instance_id))

    # -- the steps of a run ---------------------------------------------------------------

    def prepare(self, targets: Sequence[Target], request: ScriptRequest) -> Plan:
        """Check targets and cut them into chunks of at most 50 per (account, region).

        Raises a transient ``AwsError`` (for the task to retry) when AWS throttled past
        botocore's retries; any other failure becomes ``error`` results for its group.
        """
        valid, results = validate_targets(targets, request)
        groups: dict[tuple[str, str], list[Target]] = defaultdict(list)
        for target in valid:
            groups[(target.account_id, target.region)].append(target)
        chunks: list[Chunk] = []
        for (account_id, region), group in groups.items():
            try:
                managed = self._registered(account_id, region, [t.instance_id for t in group])
            except AwsError as exc:
                if exc.transient:
                    raise
                results.extend(
                    ScriptResult.without_running(t, ResultStatus.ERROR, str(exc)) for t in group
                )
                continue
            ready, checked = check_registration(group, managed, request)
            results.extend(checked)
            chunks.extend(chunk_targets(account_id, region, ready, request))
        return Plan(chunks=chunks, results=results)

    def _registered(
        self, account_id: str, region: str, instance_ids: list[str]
    ) -> dict[str, ManagedInstance]:
        """SSM's record of each of ``instance_ids`` it knows (DescribeInstanceInformation)."""
        return self._call(
            region,
            account_id,
            "DescribeInstanceInformation",
            lambda c: describe_managed_instances(c.ssm, instance_ids),
        )

    def send(self, chunk: Chunk, request: ScriptRequest) -> CommandRef:
        """Send one chunk as one ``SendCommand``, tried again here while AWS throttles it (at
        most ``max_attempts`` more times, with jittered backoff); any other failure is raised
        at once, a connection fault included (the command may have gone out)."""
        what = f"SendCommand to {len(chunk.targets)} instance(s)"
        attempt = 0
        while True:
            try:
                return self._call(
                    chunk.region,
                    chunk.account_id,
                    what,
                    lambda c: send_command_chunk(
                        c.ssm_send,
                        chunk,
                        request,
                        output_s3_bucket=self.config.output_s3_bucket,
                        output_s3_prefix=self.config.output_s3_prefix,
                        grace_seconds=self.config.poll.grace_seconds,
                    ),
                )
            except AwsError as exc:
                if exc.code not in THROTTLING_CODES or attempt >= self.config.max_attempts:
                    raise
            ceiling = _THROTTLED_SEND_BASE_SECONDS * 2**attempt
            time.sleep(random.uniform(0, min(_THROTTLED_SEND_MAX_SECONDS, ceiling)))
            attempt += 1

    def find_sent(self, chunk: Chunk, request: ScriptRequest, since: datetime) -> CommandRef | None:
        """The chunk's command in SSM's history since ``since`` (``ListCommands``, matched on
        the chunk marker its comment ends with and its instances), or None."""
        settle = (since + SEND_LOOKUP_SETTLE - datetime.now(UTC)).total_seconds()
        if settle > 0:
            time.sleep(settle)
        return self._call(
            chunk.region,
            chunk.account_id,
            f"ListCommands (looking for the command of chunk {chunk.key})",
            lambda c: find_sent_command(
                c.ssm, chunk, request, since, grace_seconds=self.config.poll.grace_seconds
            ),
        )

    def poll(self, ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        """One ``ListCommandInvocations`` page sequence, plus each newly final instance's full
        output when the listed one was cut."""
        return self._call(
            ref.region,
            ref.account_id,
            f"ListCommandInvocations of command {ref.command_id}",
            lambda c: poll_invocations(c.ssm, ref, finished, s3=lambda: c.s3),
        )

    # -- secrets a script reads at run time ------------------------------------------------

    @property
    def secret_stores(self) -> frozenset[SecretStore]:
        """Parameter Store and Secrets Manager: the instance reads them with the AWS CLI."""
        return frozenset({SecretStore.PARAMETER_STORE, SecretStore.SECRETS_MANAGER})

    def stage_secret(
        self, name: str, value: SecretStr, places: Collection[tuple[str, str]]
    ) -> SecretHandle:
        """A ``SecureString`` parameter ``/cloudops-flows/<name>`` holding ``value`` in each
        (account, region) of ``places``, made as the caller there (the member role in other
        accounts). If one cannot be made, those already made are deleted and the failure is
        raised (its message never holds the value)."""
        parameter = parameter_name(name)
        created: list[tuple[str, str]] = []
        failure: str | None = None
        for account_id, region in sorted(set(places)):
            try:
                self._call(
                    region,
                    account_id,
                    f"PutParameter {parameter}",
                    lambda c: put_secure_parameter(
                        c.ssm, parameter, value, self.config.secret_kms_key_id
                    ),
                )
            except AwsError as exc:
                # Whatever AWS said about the request, the value is not repeated.
                failure = str(exc).replace(value.get_secret_value(), "***")
                break
            created.append((account_id, region))
        handle = SecretHandle(
            store=SecretStore.PARAMETER_STORE, name=parameter, created_in=tuple(created)
        )
        if failure is not None:
            try:
                self.discard_secret(handle)
            except AwsError as cleanup:
                failure = f"{failure}; and then {cleanup}"
            raise AwsError(
                f"the secret could not be put where the scripts read it: {failure}. Nothing "
                "was sent that needs it"
            )
        return handle

    def discard_secret(self, handle: SecretHandle) -> None:
        """Delete the parameter from every (account, region) ``stage_secret`` made it in."""
        problems: list[str] = []
        for account_id, region in handle.created_in:
            try:
                self._call(
                    region,
                    account_id,
                    f"DeleteParameter {handle.name}",
                    lambda c: delete_parameter(c.ssm, handle.name),
                )
            except AwsError as exc:
                problems.append(str(exc))
        if problems:
            raise AwsError(
                f"the secret parameter {handle.name} could not be deleted everywhere "
                f"({'; '.join(problems)}): delete it by hand with aws ssm delete-parameter "
                f"--name {handle.name} in each of those accounts and regions"
            )

    def expire(self, ref: CommandRef, pending: Sequence[str]) -> list[ScriptResult]:
        """Cancel what is still running past the deadline; ``timed_out`` results for it."""
        try:
            return self._call(
                ref.region,
                ref.account_id,
                f"CancelCommand {ref.command_id}",
                lambda c: cancel_invocations(c.ssm, ref, pending),
            )
        except AwsError:
            # No client at all (credentials gone): the deadline still stands for these.
            return expired_results(ref, pending, cancelled=False)


def _hint_for(code: str) -> str:
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return " (check the IAM permissions of the caller or the assumed role)"
    if code in TRANSIENT_CODES:
        return " (AWS throttled or failed for a moment: retry)"
    return ""
