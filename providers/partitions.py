"""AWS partitions and the two environments the operations teams work in.

An *environment* is the name the teams use (``com`` for AWS Commercial, ``gov`` for AWS
GovCloud); a *partition* is what AWS writes in ARNs (``aws``, ``aws-us-gov``). Every region
belongs to exactly one of them, and credentials of one partition are useless (and must never
be sent) to the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote


class Environment(StrEnum):
    """The environment a set of credentials and a target belong to."""

    COM = "com"
    GOV = "gov"


@dataclass(frozen=True)
class Partition:
    """What differs between AWS partitions, for the parts of AWS these flows use."""

    environment: Environment
    name: str
    default_region: str
    dns_suffix: str
    regions: tuple[str, ...]
    console_host: str = "console.aws.amazon.com"

    def sts_endpoint(self, region: str) -> str:
        """The regional STS endpoint (never the global one, which GovCloud does not have)."""
        return f"https://sts.{region}.{self.dns_suffix}"

    def role_arn(self, account_id: str, role_name: str) -> str:
        return f"arn:{self.name}:iam::{account_id}:role/{role_name}"

    def s3_console_url(self, bucket: str, key: str, region: str) -> str:
        """The AWS console page of one S3 object, in this partition's console."""
        return (
            f"https://{self.console_host}/s3/object/{quote(bucket)}"
            f"?region={quote(region)}&prefix={quote(key, safe='')}"
        )


# Regions AWS publishes for each partition; `enumerate_regions` asks EC2 which of these an
# account has enabled, this list is what a change file may name.
_COM_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
)
_GOV_REGIONS = ("us-gov-west-1", "us-gov-east-1")

COMMERCIAL = Partition(Environment.COM, "aws", "us-east-1", "amazonaws.com", _COM_REGIONS)
GOVCLOUD = Partition(
    Environment.GOV,
    "aws-us-gov",
    "us-gov-west-1",
    "amazonaws.com",
    _GOV_REGIONS,
    console_host="console.amazonaws-us-gov.com",
)

PARTITIONS: dict[Environment, Partition] = {
    Environment.COM: COMMERCIAL,
    Environment.GOV: GOVCLOUD,
}

_REGION_SHAPE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ENVIRONMENT_OF_REGION = {
    region: partition.environment
    for partition in PARTITIONS.values()
    for region in partition.regions
}
# Partitions AWS runs that these flows never call: their regions are refused by name, so that
# no key of ours is ever signed for their endpoints.
_FOREIGN_PARTITIONS = (
    ("cn-", "AWS China (partition aws-cn)"),
    ("us-isob-", "AWS Secret Region (partition aws-iso-b)"),
    ("us-isof-", "AWS ISO-F (partition aws-iso-f)"),
    ("eu-isoe-", "AWS ISO-E (partition aws-iso-e)"),
    ("us-iso-", "AWS Top Secret Region (partition aws-iso)"),
)


class UnknownRegionError(ValueError):
    """A region of no partition these flows serve (China, ISO, or no AWS region at all)."""


def partition_for(environment: Environment | str) -> Partition:
    return PARTITIONS[Environment(environment)]


def foreign_partition(region: str) -> str | None:
    """The partition AWS runs ``region`` in when it is one these flows never call (China,
    ISO), in words; None for any other region."""
    return next((name for prefix, name in _FOREIGN_PARTITIONS if region.startswith(prefix)), None)


def region_problem(region: object, where: str = "region") -> str | None:
    """Why ``region`` (given as ``where``, e.g. ``discovery.regions[0]``) is not a region of
    AWS Commercial or GovCloud, or None when it is one."""
    if isinstance(region, str) and region in _ENVIRONMENT_OF_REGION:
        return None
    if not isinstance(region, str) or not region.strip():
        return f"{where}: no region given; use a region code such as us-east-1 or us-gov-west-1"
    foreign = foreign_partition(region)
    if foreign is not None:
        return (
            f"{where}: {region!r} is a region of {foreign}, which these flows do not serve "
            "(only AWS Commercial and AWS GovCloud); nothing was sent"
        )
    return (
        f"{where}: {region!r} is not an AWS region of AWS Commercial or GovCloud (such as "
        "us-east-1 or us-gov-west-1); nothing was sent"
    )


def environment_of_region(region: str) -> Environment:
    """``us-gov-*`` is GovCloud, the other published regions Commercial; any other region
    raises ``UnknownRegionError``, so no caller can sign for a partition by default."""
    environment = _ENVIRONMENT_OF_REGION.get(region)
    if environment is None:
        raise UnknownRegionError(region_problem(region))
    return environment


def partition_of_region(region: str) -> Partition:
    return PARTITIONS[environment_of_region(region)]


def partition_of_arn(arn: str) -> str:
    """The partition field of an ARN (``arn:<partition>:...``)."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[1]


def is_known_region(region: str) -> bool:
    """A region that one of the known partitions publishes."""
    return region in _ENVIRONMENT_OF_REGION


def looks_like_region(region: str) -> bool:
    return bool(_REGION_SHAPE.match(region))
