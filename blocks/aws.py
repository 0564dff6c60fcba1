"""The block of the AWS provider: credentials and settings for SSM Run Command in one
environment (``com`` or ``gov``), saved in Prefect so the UI can edit them and hide secrets."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

from blocks.base import ProviderBlock
from blocks.registry import ProviderBlockInvalidError, register_provider
from providers.aws.config import AwsProviderConfig
from providers.aws.credentials import sanitize_session_name
from providers.base import PollSchedule
from providers.destinations import ReportDestination
from providers.partitions import (
    PARTITIONS,
    Environment,
    environment_of_region,
    is_known_region,
)

if TYPE_CHECKING:
    from providers.aws.provider import AwsProvider


# The regions of both partitions as choices, so the form offers a list to pick from rather
# than a JSON editor.
AwsRegion = StrEnum(  # type: ignore[misc]
    "AwsRegion",
    {region.replace("-", "_").upper(): region for p in PARTITIONS.values() for region in p.regions},
)


class AwsProviderBlock(ProviderBlock):
    """Runs scripts on EC2 instances through AWS SSM Run Command, in one environment: ``com``
    (AWS Commercial) or ``gov`` (AWS GovCloud).

    Credentials, the first present wins: the keys stored on this block; else the legacy
    variables ``AWS_ACCESS_KEY_ID_COM`` / ``_GOV`` (and their secret key and session token);
    else the named profile; else boto3's default chain (instance role, SSO, ``AWS_*``
    variables), accepted only when its partition matches the environment. For accounts other
    than the caller's, the provider assumes ``role_name`` in that account.

    Example:
        Save a block for GovCloud, then load it and run a script:
        ```python
        from blocks import AwsProviderBlock
        from providers.base import Target

        AwsProviderBlock(environment="gov", role_name="OpsAutomation").save("prod-gov")

        provider = AwsProviderBlock.load("prod-gov").build_provider()
        result = provider.execute_script(
            Target(instance_id="i-0123456789abcdef0", account_id="123456789012",
                   region="us-gov-west-1"),
            "uname -r",
        )
        ```
        Flows take the block by its slug: ``provider="aws-provider/prod-gov"``.
    """

    _block_type_name = "AWS Provider"
    _block_type_slug = "aws-provider"
    _logo_url = HttpUrl(
        "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"
    )
    _description = (
        "Runs the CloudOps flows' scripts on EC2 instances through AWS SSM Run Command, in AWS "
        "Commercial (com) or AWS GovCloud (gov), across accounts (it assumes a role in each). "
        "Not the same as prefect-aws's AWS Credentials block, which only holds keys: this one "
        "also says which environment, which role, which regions and where output goes, and "
        "it can take its keys from an AWS Credentials block you already have."
    )

    provider_name: ClassVar[str] = "aws"

    # Literal, not the Environment enum: the UI form shows this field's own help beside the
    # choices, where an enum field shows the enum's docstring instead.
    environment: Literal["com", "gov"] = Field(
        default="com",
        title="Environment",
        description=(
            "com: AWS Commercial (partition aws, regions such as us-east-1); gov: AWS GovCloud "
            "(partition aws-us-gov, regions us-gov-west-1 and us-gov-east-1). The keys below, "
            "if any, must belong to it; targets in the other environment are refused."
        ),
    )
    access_key_id: SecretStr | None = Field(
        default=None,
        title="Access Key ID",
        description="Access key id of an IAM user or role session. Leave empty to use the "
        "legacy AWS_ACCESS_KEY_ID_COM/_GOV variables, the profile, or the default chain.",
    )
    secret_access_key: SecretStr | None = Field(
        default=None,
        title="Secret Access Key",
        description="Secret access key that goes with the access key id.",
    )
    session_token: SecretStr | None = Field(
        default=None,
        title="Session Token",
        description="Session token, when the keys above are temporary credentials.",
    )
    aws_credentials_block: str | None = Field(
        default=None,
        title="Keys From an AWS Credentials Block",
        description="Instead of typing keys here: the name of a prefect-aws AWS Credentials "
        "block you already have; its access key id, secret access key and session token (or "
        "its profile) are used. Its keys must belong to this block's environment.",
    )
    profile_name: str | None = Field(
        default=None,
        title="Profile Name",
        description="A named profile of the worker's AWS config files, used when no keys are "
        "stored here and no legacy variables are set.",
    )
    role_name: str = Field(
        default="OrganizationAccountAccessRole",
        min_length=1,
        max_length=64,
        title="Cross-Account Role Name",
        description="Role assumed in every target account other than the caller's own.",
    )
    external_id: SecretStr | None = Field(
        default=None,
        title="External ID",
        description="External id the cross-account role's trust policy requires, if any.",
    )
    session_duration_seconds: int = Field(
        default=3600,
        ge=900,
        le=43_200,
        title="Role Session Duration (seconds)",
        description="Lifetime of assumed-role credentials: 900 to 43200, within the role's "
        "maximum session duration.",
    )
    default_regions: list[AwsRegion] = Field(
        default_factory=list,
        title="Default Regions",
        description="Regions searched by discovery when a run names none, e.g. us-east-1 or "
        "us-gov-west-1. Empty: the environment's default region.",
    )
    output_s3_bucket: str | None = Field(
        default=None,
        title="Output S3 Bucket",
        description="When set, SSM writes each instance's full output here and results are "
        "read from S3 instead of being capped at 24,000/8,000 characters.",
    )
    output_s3_prefix: str = Field(
        default="cloudops-flows",
        title="Output S3 Key Prefix",
        description="Key prefix of the output objects in the bucket above.",
    )
    secret_kms_key_id: str | None = Field(
        default=None,
        title="Secret Parameter KMS Key",
        description="KMS key (id, ARN or alias) that encrypts the SecureString parameters a "
        "run creates for its scripts' secrets (the sft-fixer enrollment token). Empty: the "
        "account's alias/aws/ssm. The instance profiles need kms:Decrypt on it.",
    )
    poll_initial_seconds: float = Field(
        default=2.0,
        gt=0,
        le=300,
        title="First Poll Interval (seconds)",
        description="Wait before the first look at a sent command; grows with backoff.",
    )
    poll_max_seconds: float = Field(
        default=15.0,
        gt=0,
        le=600,
        title="Longest Poll Interval (seconds)",
        description="Ceiling of the growing interval between looks at a sent command.",
    )
    endpoint_url: str | None = Field(
        default=None,
        title="Endpoint URL",
        description="One endpoint for every AWS service: a VPC interface endpoint or a test "
        "server. Empty: AWS's public regional endpoints.",
    )
    max_concurrent_groups: int = Field(
        default=8,
        ge=1,
        le=64,
        title="Concurrent Account/Region Groups",
        description="How many (account, region) groups of targets run at the same time.",
    )
    reports_destination: str | None = Field(
        default=None,
        title="Reports Destination",
        description="Where every run also writes its report files, so they are in one place "
        "whichever worker ran: s3://bucket/prefix (written with this block's credentials, in "
        "its environment) or the absolute path of a shared directory. The setting "
        "CLOUDOPS_REPORTS_DESTINATION of a worker wins over this.",
    )

    @field_validator("default_regions", mode="before")
    @classmethod
    def _regions_are_real(cls, regions: object) -> object:
        # Before the choices are checked: one line naming the unknown regions, not the list
        # of every region there is.
        if not isinstance(regions, list):
            return regions
        unknown = [r for r in regions if not is_known_region(str(r))]
        if unknown:
            raise ValueError(
                f"unknown region(s) {', '.join(unknown)}: use AWS region codes such as "
                "us-east-1 or us-gov-west-1"
            )
        return regions

    @field_validator("reports_destination")
    @classmethod
    def _destination_is_usable(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return ReportDestination.parse(value).describe()

    @model_validator(mode="after")
    def _consistent(self) -> AwsProviderBlock:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both the access key id and the secret access key, or neither")
        if self.access_key_id is not None and self.aws_credentials_block:
            raise ValueError(
                "keys are set here and an AWS Credentials block is named too: keep one of them"
            )
        if self.poll_max_seconds < self.poll_initial_seconds:
            raise ValueError(
                f"the longest poll interval ({self.poll_max_seconds} s) is shorter than the "
                f"first ({self.poll_initial_seconds} s)"
            )
        foreign = [r for r in self.default_regions if environment_of_region(r) != self.environment]
        if foreign:
            raise ValueError(
                f"default region(s) {', '.join(foreign)} are not in the {self.environment} "
                "environment: GovCloud regions (us-gov-*) belong to gov, all others to com"
            )
        return self

    def to_config(self) -> AwsProviderConfig:
        """The plain settings the AWS provider is built from (secrets stay ``SecretStr``)."""
        keys = AwsKeys(self.access_key_id, self.secret_access_key, self.session_token)
        profile = self.profile_name or None
        if self.aws_credentials_block:
            keys, borrowed_profile = keys_of_aws_credentials_block(self.aws_credentials_block)
            profile = profile or borrowed_profile
        return AwsProviderConfig(
            environment=Environment(self.environment),
            access_key_id=keys.access_key_id,
            secret_access_key=keys.secret_access_key,
            session_token=keys.session_token,
            profile_name=profile,
            role_name=self.role_name,
            external_id=self.external_id,
            session_duration_seconds=self.session_duration_seconds,
            default_regions=tuple(str(region) for region in self.default_regions),
            output_s3_bucket=self.output_s3_bucket or None,
            output_s3_prefix=self.output_s3_prefix,
            secret_kms_key_id=self.secret_kms_key_id or None,
            poll=PollSchedule(
                initial_seconds=self.poll_initial_seconds, max_seconds=self.poll_max_seconds
            ),
            endpoint_url=self.endpoint_url or None,
            max_concurrent_groups=self.max_concurrent_groups,
            reports_destination=self.reports_destination,
            session_name=assume_role_session_name(),
        )

    def build_provider(self) -> AwsProvider:
        """The AWS provider configured from this block."""
        # Imported here so that registering and editing blocks never pulls in the SSM engine.
        from providers.aws.provider import AwsProvider

        return AwsProvider(self.to_config())


class AwsKeys(NamedTuple):
    access_key_id: SecretStr | None
    secret_access_key: SecretStr | None
    session_token: SecretStr | None


AWS_CREDENTIALS_BLOCK_TYPE = "aws-credentials"


def keys_of_aws_credentials_block(name: str) -> tuple[AwsKeys, str | None]:
    """The keys (and profile) of the prefect-aws AWS Credentials block ``name``.

    Read as a block document from the Prefect API, so a worker needs no prefect-aws installed
    to use one; its secrets become ``SecretStr`` at once. A missing block is refused by name.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                name, block_type_slug=AWS_CREDENTIALS_BLOCK_TYPE, include_secrets=True
            )
    except ObjectNotFound:
        raise ProviderBlockInvalidError(
            f"the AWS Credentials block {name!r} named on the aws-provider block is not saved "
            f"(Blocks > + > AWS Credentials, or fix the name); nothing was sent"
        ) from None
    data = document.data

    def secret(field: str) -> SecretStr | None:
        value = data.get(field)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return SecretStr(value) if isinstance(value, str) and value else None

    keys = AwsKeys(
        secret("aws_access_key_id"), secret("aws_secret_access_key"), secret("aws_session_token")
    )
    if (keys.access_key_id is None) != (keys.secret_access_key is None):
        raise ProviderBlockInvalidError(
            f"the AWS Credentials block {name!r} holds only half a key pair: set both its access "
            "key id and secret access key, or neither (to use its profile); nothing was sent"
        )
    profile = data.get("profile_name")
    return keys, profile if isinstance(profile, str) and profile else None


def assume_role_session_name() -> str:
    """The AssumeRole session name: the flow run's, so CloudTrail in a member account says
    which run did what (``cloudops-flows`` outside a flow run)."""
    from prefect.runtime import flow_run

    name = flow_run.name
    return sanitize_session_name(f"cloudops-{name}") if name else "cloudops-flows"


def aws_provider_from_environment() -> AwsProvider:
    """The AWS provider without a block: credentials from the legacy ``AWS_*_COM``/``_GOV``
    variables, else boto3's default chain, in the default (``com``) environment."""
    from providers.aws.provider import AwsProvider

    return AwsProvider(AwsProviderConfig(session_name=assume_role_session_name()))


register_provider(
    AwsProviderBlock.provider_name,
    aws_provider_from_environment,
    AwsProviderBlock,
    prefer_saved_block=True,
)
