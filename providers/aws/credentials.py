"""Which AWS credentials act for an environment or an account, verified and kept fresh.

For each environment (``com``, ``gov``) the first source that is present wins:

1. keys on the provider block (``AwsProviderConfig``), which belong to ``config.environment``;
2. the legacy variables ``AWS_ACCESS_KEY_ID_COM`` ... ``AWS_SESSION_TOKEN_GOV``
   (``LegacyCredentials``: process environment or ``.env``);
3. the block's named profile, else boto3's default chain (instance role, SSO, standard
   variables), accepted only when the identity's ARN is in the environment's partition.

Base credentials are checked once with STS ``GetCallerIdentity``. For an account other than the
caller's the resolver assumes ``arn:<partition>:iam::<account>:role/<role_name>``; when that
fails the error names the account and role, and the base credentials are never used instead.
Both kinds are cached until ``REFRESH_MARGIN`` before their expiry. Secret values stay
``SecretStr`` and are scrubbed from every message this module writes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import boto3
import botocore.session
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.utils import IMDSRegionProvider
from pydantic import SecretStr

from providers.aws.clients import endpoint_for, make_client
from providers.aws.config import AwsProviderConfig
from providers.aws.errors import (
    EXPIRED_CODES,
    AwsError,
    CredentialError,
    MissingCredentialsError,
    PartitionMismatchError,
    error_code,
    is_expired,
    is_transient_fault,
)
from providers.aws.settings import LegacyCredentials
from providers.base import CredentialReport, CredentialSource
from providers.partitions import (
    Environment,
    Partition,
    foreign_partition,
    is_known_region,
    partition_for,
    partition_of_arn,
    partition_of_region,
    region_problem,
)

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import AssumeRoleRequestTypeDef

logger = logging.getLogger(__name__)

# Refresh this long before the real expiry, so that a command sent just before it still has
# time to be polled with the same credentials.
REFRESH_MARGIN = timedelta(minutes=5)

_ACCOUNT_ID = re.compile(r"^\d{12}$")
# STS accepts RoleSessionName of 2-64 characters from [\w+=,.@-] (ASCII word characters).
_SESSION_NAME_FORBIDDEN = re.compile(r"[^\w+=,.@-]", re.ASCII)
_SESSION_NAME_MAX = 64
_SESSION_NAME_FALLBACK = "cloudops-flows"


def sanitize_session_name(name: str) -> str:
    """``name`` made acceptable as an STS RoleSessionName (it shows in CloudTrail, so a flow
    run name is kept as readable as possible: forbidden characters become ``-``)."""
    cleaned = _SESSION_NAME_FORBIDDEN.sub("-", name.strip())[:_SESSION_NAME_MAX]
    return cleaned if len(cleaned) >= 2 else _SESSION_NAME_FALLBACK


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ResolvedCredentials:
    """Credentials AWS has accepted: who they act as, where they came from, until when.

    The keys stay ``SecretStr``, so ``repr``/``str`` never show them; ``boto3_session`` is the
    one place they are unwrapped.
    """

    environment: Environment
    source: CredentialSource
    access_key_id: SecretStr
    secret_access_key: SecretStr
    session_token: SecretStr | None
    expiry: datetime | None
    account_id: str
    arn: str
    partition: str
    region: str  # where STS vouched for them
    origin: str  # where they came from, in words, for messages
    role_arn: str | None = None  # set for credentials of an assumed role

    def fresh_at(self, now: datetime) -> bool:
        """Still usable at ``now`` with the refresh margin to spare (no expiry: always)."""
        return self.expiry is None or now < self.expiry - REFRESH_MARGIN

    def report(self) -> CredentialReport:
        """Who these credentials act as, without the secret."""
        return CredentialReport(
            environment=self.environment,
            account_id=self.account_id,
            arn=self.arn,
            partition=self.partition,
            source=self.source,
            expiry=self.expiry,
            region=self.region,
        )

    def boto3_session(self, region: str) -> boto3.session.Session:
        """A boto3 session acting with these credentials in ``region``."""
        return boto3.session.Session(
            aws_access_key_id=self.access_key_id.get_secret_value(),
            aws_secret_access_key=self.secret_access_key.get_secret_value(),
            aws_session_token=(
                self.session_token.get_secret_value() if self.session_token else None
            ),
            region_name=region,
        )


@dataclass(frozen=True)
class _Candidate:
    """Credentials a source holds for an environment, not yet shown to AWS."""

    source: CredentialSource
    origin: str
    access_key_id: SecretStr
    secret_access_key: SecretStr
    session_token: SecretStr | None
    expiry: datetime | None
    sts_region: str

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.access_key_id.get_secret_value(),
            aws_secret_access_key=self.secret_access_key.get_secret_value(),
            aws_session_token=(
                self.session_token.get_secret_value() if self.session_token else None
            ),
            region_name=self.sts_region,
        )


def _legacy_names(environment: Environment) -> str:
    suffix = environment.value.upper()
    return f"AWS_ACCESS_KEY_ID_{suffix}/AWS_SECRET_ACCESS_KEY_{suffix}"


def _how_to_set(environment: Environment) -> str:
    partition = partition_for(environment)
    suffix = environment.value.upper()
    return (
        f"To give {environment.value} credentials, do one of: set access_key_id and "
        f"secret_access_key (and session_token for temporary keys) on an aws-provider block "
        f"whose environment is '{environment.value}'; set AWS_ACCESS_KEY_ID_{suffix} and "
        f"AWS_SECRET_ACCESS_KEY_{suffix} (and AWS_SESSION_TOKEN_{suffix}) in the worker's "
        f"environment or in a .env file in its working directory; or set profile_name on the "
        f"block to an AWS profile of partition {partition.name}, or give boto3's default chain "
        f"(instance role, SSO, AWS_ACCESS_KEY_ID) {partition.name} credentials."
    )


class CredentialResolver:
    """Finds, verifies and caches AWS credentials per environment and per target account.

    Safe to share between threads (Prefect runs tasks in a thread pool): each environment and
    each (environment, account) is resolved by one thread at a time while the others wait for
    its result, and different accounts are resolved in parallel.
    """

    def __init__(
        self,
        config: AwsProviderConfig,
        *,
        legacy: LegacyCredentials | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ):
        self._config = config
        self._legacy = legacy if legacy is not None else LegacyCredentials()
        self._clock = clock
        self._guard = threading.Lock()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._base: dict[Environment, ResolvedCredentials] = {}
        self._assumed: dict[tuple[Environment, str], ResolvedCredentials] = {}

    # -- public interface -------------------------------------------------------------------

    def resolve(self, environment: Environment | str) -> ResolvedCredentials:
        """The base credentials of ``environment``, checked with STS ``GetCallerIdentity``.

        Raises ``CredentialError``: ``transient`` for throttling and network faults, not for
        invalid, expired or refused keys or when no source has credentials.
        """
        return self._base_for(Environment(environment), region=None)

    def report(self, environment: Environment | str) -> CredentialReport:
        """Who the provider acts as in ``environment``: account, ARN, partition, source."""
        return self.resolve(environment).report()

    def credentials_for(self, region: str, account_id: str | None = None) -> ResolvedCredentials:
        """Credentials to act in ``region`` of ``account_id`` (the caller's own when None).

        The region decides the environment, so credentials are only ever those of the region's
        partition: a GovCloud region with only commercial credentials configured (or the
        reverse) raises ``PartitionMismatchError`` before any AWS call. For another account
        than the caller's, the configured role is assumed; if that fails, ``CredentialError``.
        """
        partition = self._partition_of(region)
        if account_id is not None and not _ACCOUNT_ID.match(account_id):
            raise AwsError(
                f"Account id {account_id!r} (for region {region}) is not 12 digits; if it came "
                "from a spreadsheet, restore its leading zeros."
            )
        base = self._base_for(partition.environment, region=region)
        if account_id is None or account_id == base.account_id:
            return base
        return self._assumed_for(base, account_id, partition)

    def invalidate(self, environment: Environment | str | None = None) -> None:
        """Forget cached base and assumed credentials of ``environment`` (all when None), e.g.
        after AWS answered ``ExpiredToken``; the next call resolves them again."""
        environments = set(Environment) if environment is None else {Environment(environment)}
        with self._guard:
            for env in environments:
                self._base.pop(env, None)
            for key in [k for k in self._assumed if k[0] in environments]:
                del self._assumed[key]

    # -- base credentials -------------------------------------------------------------------

    def _base_for(self, environment: Environment, region: str | None) -> ResolvedCredentials:
        with self._lock_for(environment):
            cached = self._base.get(environment)
            if cached is not None and cached.fresh_at(self._clock()):
                return cached
            candidate = self._find_source(environment)
            if candidate is None:
                raise self._no_source_error(environment, region)
            resolved = self._verify(environment, candidate)
            with self._guard:
                self._base[environment] = resolved
            logger.info(
                "AWS credentials for %s: %s from %s (account %s, expires %s)",
                environment.value,
                resolved.arn,
                resolved.origin,
                resolved.account_id,
                resolved.expiry.isoformat() if resolved.expiry else "never",
            )
            return resolved

    def _find_source(self, environment: Environment) -> _Candidate | None:
        """The first source with credentials for ``environment``; no AWS API call."""
        sts_region = self._sts_region(partition_for(environment))
        if environment is self._config.environment:
            block_keys = self._block_keys()
            if block_keys is not None:
                return _Candidate(
                    CredentialSource.BLOCK,
                    "the aws-provider block (access_key_id/secret_access_key)",
                    *block_keys,
                    expiry=None,
                    sts_region=sts_region,
                )
        legacy_keys = self._legacy.keys_for(environment)
        if legacy_keys is not None:
            return _Candidate(
                CredentialSource.ENV,
                f"the variables {_legacy_names(environment)}",
                *legacy_keys,
                expiry=None,
                sts_region=sts_region,
            )
        return self._chain_candidate(environment, sts_region)

    def _block_keys(self) -> tuple[SecretStr, SecretStr, SecretStr | None] | None:
        config = self._config
        key_id = _present(config.access_key_id)
        secret = _present(config.secret_access_key)
        token = _present(config.session_token)
        if key_id is None and secret is None:
            if token is not None:
                raise CredentialError(
                    f"The aws-provider block for {config.environment.value} has a session_token "
                    "but no access_key_id/secret_access_key: set all three, or clear it."
                )
            return None
        if key_id is None or secret is None:
            missing = "access_key_id" if key_id is None else "secret_access_key"
            raise CredentialError(
                f"The aws-provider block for {config.environment.value} has only half a key "
                f"pair: {missing} is empty. Set both fields, or clear both to use the "
                f"variables {_legacy_names(config.environment)} or a profile."
            )
        return key_id, secret, token

    def _chain_candidate(self, environment: Environment, sts_region: str) -> _Candidate | None:
        profile = self._config.profile_name
        source = CredentialSource.PROFILE if profile else CredentialSource.DEFAULT_CHAIN
        try:
            session = boto3.session.Session(profile_name=profile)
        except ProfileNotFound as exc:
            raise CredentialError(
                f"The AWS profile {exc.kwargs.get('profile')!r} (profile_name on the "
                f"aws-provider block, or AWS_PROFILE) is not in the AWS config files, so there "
                f"are no {environment.value} credentials from it. Add the profile or fix the "
                "name.",
                code="ProfileNotFound",
            ) from exc
        try:
            found = session.get_credentials()
            frozen = found.get_frozen_credentials() if found is not None else None
        except (BotoCoreError, ClientError) as exc:
            origin = f"the AWS profile {profile!r}" if profile else "boto3's default chain"
            raise self._failure(environment, origin, sts_region, exc, loading=True) from exc
        if found is None or frozen is None or not frozen.access_key or not frozen.secret_key:
            if profile:
                raise MissingCredentialsError(
                    f"The AWS profile {profile!r} has no credentials for {environment.value}. "
                    + _how_to_set(environment)
                )
            return None
        origin = (
            f"the AWS profile {profile!r}" if profile else f"boto3's default chain ({found.method})"
        )
        home = _home_region(session, found, profile)
        if home is not None and not self._serves(environment, home):
            # Credentials made for another partition are not credentials of this environment:
            # "not configured", decided without sending them anywhere.
            raise MissingCredentialsError(
                _other_partition_message(environment, origin, home) + _how_to_set(environment)
            )
        # botocore publishes no accessor for a refreshable credential's expiry; the attribute
        # is what botocore itself reads to decide when to refresh.
        expiry = getattr(found, "_expiry_time", None)
        return _Candidate(
            source,
            origin,
            SecretStr(frozen.access_key),
            SecretStr(frozen.secret_key),
            SecretStr(frozen.token) if frozen.token else None,
            expiry=expiry.astimezone(UTC) if isinstance(expiry, datetime) else None,
            # Asked in their own region, they show up as what they are; without one, they are
            # tried in this environment's own partition, never in the other.
            sts_region=home if home is not None else sts_region,
        )

    @staticmethod
    def _serves(environment: Environment, region: str) -> bool:
        return is_known_region(region) and partition_of_region(region) is partition_for(environment)

    def _verify(self, environment: Environment, candidate: _Candidate) -> ResolvedCredentials:
        expected = partition_for(environment)
        try:
            sts = self._sts(candidate.session(), candidate.sts_region)
            identity = sts.get_caller_identity()
        except (BotoCoreError, ClientError) as exc:
            raise self._failure(
                environment,
                candidate.origin,
                candidate.sts_region,
                exc,
                secrets=(candidate.secret_access_key, candidate.session_token),
            ) from exc
        arn = identity["Arn"]
        found = partition_of_arn(arn)
        if found != expected.name:
            message = (
                f"The credentials from {candidate.origin} act as {arn}, in partition {found}, "
                f"so they cannot be used for {environment.value} (partition {expected.name}). "
                + _how_to_set(environment)
            )
            # A profile or the default chain serves whichever partition it was made for, so
            # for the other environment there simply are no credentials; keys given for this
            # environment by name (block, variables) are wrong instead.
            if candidate.source in (CredentialSource.PROFILE, CredentialSource.DEFAULT_CHAIN):
                raise MissingCredentialsError(message)
            raise CredentialError(message)
        return ResolvedCredentials(
            environment=environment,
            source=candidate.source,
            access_key_id=candidate.access_key_id,
            secret_access_key=candidate.secret_access_key,
            session_token=candidate.session_token,
            expiry=candidate.expiry,
            account_id=identity["Account"],
            arn=arn,
            partition=found,
            region=candidate.sts_region,
            origin=candidate.origin,
        )

    def _no_source_error(self, environment: Environment, region: str | None) -> AwsError:
        other = Environment.GOV if environment is Environment.COM else Environment.COM
        if region is not None and self._has_keys_for(other):
            return PartitionMismatchError(
                f"Region {region} is in partition {partition_for(environment).name} "
                f"({environment.value}), but AWS credentials are configured for {other.value} "
                f"only; nothing was sent. Target a {other.value} region, or add "
                f"{environment.value} credentials. " + _how_to_set(environment)
            )
        block = (
            f"the aws-provider block (its keys are for {self._config.environment.value})"
            if environment is not self._config.environment
            else "the aws-provider block (no access_key_id/secret_access_key)"
        )
        chain = (
            f"the AWS profile {self._config.profile_name!r}"
            if self._config.profile_name
            else "boto3's default chain (no profile_name on the block)"
        )
        return MissingCredentialsError(
            f"No AWS credentials for {environment.value}: tried {block}, the variables "
            f"{_legacy_names(environment)} (environment and .env), and {chain}. "
            + _how_to_set(environment)
        )

    def _has_keys_for(self, environment: Environment) -> bool:
        """Whether the block or the legacy variables hold keys for ``environment``."""
        config = self._config
        on_block = (
            environment is config.environment
            and _present(config.access_key_id) is not None
            and _present(config.secret_access_key) is not None
        )
        return on_block or self._legacy.keys_for(environment) is not None

    # -- assumed roles ----------------------------------------------------------------------

    def _assumed_for(
        self, base: ResolvedCredentials, account_id: str, partition: Partition
    ) -> ResolvedCredentials:
        key = (base.environment, account_id)
        with self._lock_for(key):
            cached = self._assumed.get(key)
            if cached is not None and cached.fresh_at(self._clock()):
                return cached
            role_arn = partition.role_arn(account_id, self._config.role_name)
            request: AssumeRoleRequestTypeDef = {
                "RoleArn": role_arn,
                "RoleSessionName": sanitize_session_name(self._config.session_name),
                "DurationSeconds": self._config.session_duration_seconds,
            }
            if self._config.external_id is not None:
                request["ExternalId"] = self._config.external_id.get_secret_value()
            try:
                sts = self._sts(base.boto3_session(base.region), base.region)
                response = sts.assume_role(**request)
            except (BotoCoreError, ClientError) as exc:
                if is_expired(exc):
                    self.invalidate(base.environment)
                raise self._assume_failure(base, account_id, role_arn, exc) from exc
            issued = response["Credentials"]
            resolved = ResolvedCredentials(
                environment=base.environment,
                source=base.source,
                access_key_id=SecretStr(issued["AccessKeyId"]),
                secret_access_key=SecretStr(issued["SecretAccessKey"]),
                session_token=SecretStr(issued["SessionToken"]),
                expiry=issued["Expiration"].astimezone(UTC),
                account_id=account_id,
                arn=response["AssumedRoleUser"]["Arn"],
                partition=partition.name,
                region=base.region,
                origin=f"role {role_arn} assumed with {base.origin}",
                role_arn=role_arn,
            )
            with self._guard:
                self._assumed[key] = resolved
            logger.info(
                "Assumed %s for account %s (%s), valid until %s",
                role_arn,
                account_id,
                base.environment.value,
                resolved.expiry.isoformat() if resolved.expiry else "unknown",
            )
            return resolved

    def _assume_failure(
        self, base: ResolvedCredentials, account_id: str, role_arn: str, exc: Exception
    ) -> CredentialError:
        code = error_code(exc)
        transient = is_transient_fault(exc)
        if code in EXPIRED_CODES:
            advice = (
                f"The {base.environment.value} base credentials had expired; they were "
                "dropped and are resolved again on the next try."
            )
        elif transient:
            advice = "This is a passing fault (throttling or network); trying again may work."
        elif code == "ValidationError":
            advice = (
                f"If the duration is the problem, lower session_duration_seconds on the block "
                f"(now {self._config.session_duration_seconds}); the role's maximum session "
                "duration applies, and at most 3600 when the base credentials are a role."
            )
        else:
            advice = (
                f"Check that the role exists in account {account_id}, that its trust policy "
                f"allows {base.arn} (and the external id on the block, if the role requires "
                "one), and that the caller may call sts:AssumeRole on it."
            )
        message = (
            f"Cannot assume {role_arn} in account {account_id} ({base.environment.value}) as "
            f"{base.arn}: {_describe(exc, endpoint_for('sts', base.region, self._config))}. "
            f"{advice} Targets in account {account_id} are not run; the base credentials are "
            "never used in its place."
        )
        secrets = (base.secret_access_key, base.session_token, self._config.external_id)
        return CredentialError(_scrub(message, *secrets), transient=transient, code=code)

    # -- shared -----------------------------------------------------------------------------

    def _failure(
        self,
        environment: Environment,
        origin: str,
        region: str,
        exc: Exception,
        *,
        loading: bool = False,
        secrets: tuple[SecretStr | None, ...] = (),
    ) -> CredentialError:
        """The error for base credentials that could not be loaded or that STS refused."""
        code = error_code(exc)
        if code in EXPIRED_CODES:
            transient = False
            advice = "They have expired: renew them (for temporary keys, a new session token)."
        elif is_transient_fault(exc):
            transient = True
            advice = "This is a passing fault (throttling or network); trying again may work."
        else:
            transient = False
            advice = (
                "Check or replace them. The first source that holds credentials is the one "
                "used, so stale keys there hide the sources after it."
            )
        if loading:
            verb, endpoint = "could not be loaded", None
        else:
            verb = "were refused by STS" if code else "could not be checked"
            endpoint = endpoint_for("sts", region, self._config)
        message = (
            f"The {environment.value} credentials from {origin} {verb} "
            f"({_describe(exc, endpoint)}). {advice}"
        )
        return CredentialError(_scrub(message, *secrets), transient=transient, code=code)

    def _sts(self, session: boto3.session.Session, region: str) -> STSClient:
        return cast("STSClient", make_client(session, "sts", region, self._config))

    def _partition_of(self, region: str) -> Partition:
        # Only regions of the two partitions served: a China or ISO region (or a typo) would
        # otherwise be taken for Commercial and signed with its keys.
        problem = region_problem(region)
        if problem is not None:
            raise AwsError(problem, code="UnknownRegion")
        return partition_of_region(region)

    def _sts_region(self, partition: Partition) -> str:
        """The region STS is asked in for ``partition``: the first of the block's default
        regions in that partition, else the partition's home region."""
        for region in self._config.default_regions:
            if partition_of_region(region) is partition:
                return region
        return partition.default_region

    def _lock_for(self, key: Hashable) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


def _home_region(
    session: boto3.session.Session, found: Credentials, profile: str | None
) -> str | None:
    """The region the credentials of a profile or of the default chain were made for, which
    says their partition: an instance role's is the instance's own (from the instance
    metadata service, whatever region the worker is configured with); else the configured
    region (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's ``region``), else the
    region of the profile's SSO portal. None when nothing says, or a region no partition has.
    """
    candidates: list[str | None] = []
    if getattr(found, "method", None) == "iam-role":
        candidates.append(IMDSRegionProvider(botocore.session.get_session()).provide())
    candidates.append(session.region_name)
    try:
        scoped = botocore.session.Session(profile=profile).get_scoped_config()
        candidates.append(scoped.get("sso_region"))
    except BotoCoreError:
        pass  # a profile that cannot be read says nothing about its region
    for region in candidates:
        if region and (is_known_region(region) or foreign_partition(region)):
            return region
    return None


def _other_partition_message(environment: Environment, origin: str, home: str) -> str:
    expected = partition_for(environment).name
    if is_known_region(home):
        theirs = f"partition {partition_of_region(home).name}"
    else:
        theirs = foreign_partition(home) or "another partition"
    return (
        f"The credentials from {origin} belong to {theirs} (their region is {home}), so "
        f"there are none for {environment.value} (partition {expected}); they were not sent "
        f"to any {expected} endpoint. "
    )


def _present(value: SecretStr | None) -> SecretStr | None:
    """``value`` unless it is missing or empty (an empty form field in the Prefect UI)."""
    return value if value is not None and value.get_secret_value() else None


def _describe(exc: Exception, endpoint: str | None) -> str:
    """The AWS error code and message, or the fault and the endpoint it happened on."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "error"), error.get("Message")
        return f"{code}: {message}" if message else code
    where = f" talking to {endpoint}" if endpoint and is_transient_fault(exc) else ""
    return f"{type(exc).__name__}{where}: {exc}"


def _scrub(text: str, *secrets: SecretStr | None) -> str:
    """``text`` with any secret value in it masked: AWS messages are passed on to people."""
    for secret in secrets:
        if secret is not None and secret.get_secret_value():
            text = text.replace(secret.get_secret_value(), "**********")
    return text
