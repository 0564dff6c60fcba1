"""Settings of the AWS provider, as plain data (the Prefect block converts itself to this)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from providers.base import PollSchedule
from providers.partitions import Environment, partition_for, region_problem


class AwsProviderConfig(BaseModel):
    """Everything the AWS provider needs to know, secrets as ``SecretStr``."""

    model_config = ConfigDict(frozen=True)

    environment: Environment = Field(
        default=Environment.COM,
        description="the environment the keys below (if any) belong to; also the home environment",
    )
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    profile_name: str | None = None
    role_name: str = "OrganizationAccountAccessRole"
    external_id: SecretStr | None = None
    session_duration_seconds: int = Field(default=3600, ge=900, le=43_200)
    session_name: str = Field(default="cloudops-flows", max_length=64)
    default_regions: tuple[str, ...] = ()
    output_s3_bucket: str | None = None
    output_s3_prefix: str = "cloudops-flows"
    secret_kms_key_id: str | None = Field(
        default=None,
        description="KMS key of the SecureString parameters a run creates for its scripts' "
        "secrets; None: the account's alias/aws/ssm",
    )
    poll: PollSchedule = Field(default_factory=PollSchedule)
    endpoint_url: str | None = Field(
        default=None, description="one endpoint for every service: a VPC endpoint or a test server"
    )
    max_attempts: int = Field(default=8, ge=1, le=20, description="botocore retry attempts")
    max_concurrent_groups: int = Field(default=8, ge=1, le=64)
    reports_destination: str | None = Field(
        default=None, description="s3://bucket/prefix or a directory that keeps report copies"
    )

    @property
    def home_region(self) -> str:
        """The region calls outside any target are made in: the first default region, else
        the environment's default region."""
        if self.default_regions:
            return self.default_regions[0]
        return partition_for(self.environment).default_region

    @field_validator("default_regions")
    @classmethod
    def _served_regions(cls, regions: tuple[str, ...]) -> tuple[str, ...]:
        # Each default region gets the credentials of its own partition; a region of no
        # partition served here (China, ISO, a typo) is refused before any provider exists.
        problems = [
            problem
            for index, region in enumerate(regions)
            if (problem := region_problem(region, f"default_regions[{index}]")) is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return regions
