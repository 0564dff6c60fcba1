"""The block of the AWS provider: credentials and settings for SSM Run Command in one
environment (``com`` or ``gov``), saved in Prefect so the UI can edit them and hide secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

from blocks.base import ProviderBlock
from blocks.registry import register_provider
from providers.aws.config import AwsProviderConfig
from providers.aws.credentials import sanitize_session_name
from providers.base import PollSchedule
from providers.partitions import Environment, environment_of_region, is_known_region

if TYPE_CHECKING:
    from providers.aws.provider import AwsProvider


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
        "Credentials and settings for running scripts on EC2 instances through AWS SSM Run "
        "Command, in AWS Commercial (com) or AWS GovCloud (gov)."
    )

    provider_name: ClassVar[str] = "aws"

    environment: Environment = Field(
        default=Environment.COM,
        title="Environment",
        description=(
            "com for AWS Commercial (partition aws), gov for AWS GovCloud (partition "
            "aws-us-gov). The keys below, if any, must belong to it."
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
    default_regions: list[str] = Field(
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

    @field_validator("default_regions")
    @classmethod
    def _regions_are_real(cls, regions: list[str]) -> list[str]:
        unknown = [r for r in regions if not is_known_region(r)]
        if unknown:
            raise ValueError(
                f"unknown region(s) {', '.join(unknown)}: use AWS region codes such as "
                "us-east-1 or us-gov-west-1"
            )
        return regions

    @model_validator(mode="after")
    def _consistent(self) -> AwsProviderBlock:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both the access key id and the secret access key, or neither")
        if self.poll_max_seconds < self.poll_initial_seconds:
            raise ValueError(
                f"the longest poll interval ({self.poll_max_seconds} s) is shorter than the "
                f"first ({self.poll_initial_seconds} s)"
            )
        foreign = [r for r in self.default_regions if environment_of_region(r) != self.environment]
        if foreign:
            raise ValueError(
                f"default region(s) {', '.join(foreign)} are not in the {self.environment.value} "
                "environment: GovCloud regions (us-gov-*) belong to gov, all others to com"
            )
        return self

    def to_config(self) -> AwsProviderConfig:
        """The plain settings the AWS provider is built from (secrets stay ``SecretStr``)."""
        return AwsProviderConfig(
            environment=self.environment,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
            profile_name=self.profile_name or None,
            role_name=self.role_name,
            external_id=self.external_id,
            session_duration_seconds=self.session_duration_seconds,
            default_regions=tuple(self.default_regions),
            output_s3_bucket=self.output_s3_bucket or None,
            output_s3_prefix=self.output_s3_prefix,
            secret_kms_key_id=self.secret_kms_key_id or None,
            poll=PollSchedule(
                initial_seconds=self.poll_initial_seconds, max_seconds=self.poll_max_seconds
            ),
            endpoint_url=self.endpoint_url or None,
            max_concurrent_groups=self.max_concurrent_groups,
            session_name=assume_role_session_name(),
        )

    def build_provider(self) -> AwsProvider:
        """The AWS provider configured from this block."""
        # Imported here so that registering and editing blocks never pulls in the SSM engine.
        from providers.aws.provider import AwsProvider

        return AwsProvider(self.to_config())


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
