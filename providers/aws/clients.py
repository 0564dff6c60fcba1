"""boto3 clients configured the same way everywhere: adaptive retries, the right endpoint."""

from __future__ import annotations

from typing import Literal

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from providers.aws.config import AwsProviderConfig
from providers.partitions import partition_of_region

# The services these flows call.
ServiceName = Literal["ssm", "sts", "ec2", "s3", "organizations"]

# Lets AWS-side logs (CloudTrail user agent) tell these flows' calls apart from others.
_USER_AGENT_EXTRA = "cloudops-flows"


def client_config(config: AwsProviderConfig, region: str) -> Config:
    """botocore settings for every client: adaptive retry mode, so throttling slows the client
    down instead of failing it; ``config.max_attempts`` is the number of retries after the
    first attempt (botocore's meaning of ``max_attempts``)."""
    return Config(
        region_name=region,
        retries={"mode": "adaptive", "max_attempts": config.max_attempts},
        user_agent_extra=_USER_AGENT_EXTRA,
    )


def endpoint_for(service: ServiceName, region: str, config: AwsProviderConfig) -> str | None:
    """The endpoint a client of ``service`` in ``region`` talks to.

    ``config.endpoint_url`` (a VPC endpoint, a test server) wins. STS always gets the regional
    endpoint of the region's partition: the global ``sts.amazonaws.com`` does not exist in
    GovCloud and would send GovCloud keys to the commercial partition. Other services use
    boto3's own resolution (``None``).
    """
    if config.endpoint_url:
        return config.endpoint_url
    if service == "sts":
        return partition_of_region(region).sts_endpoint(region)
    return None


def make_client(
    session: boto3.session.Session, service: ServiceName, region: str, config: AwsProviderConfig
) -> BaseClient:
    """A boto3 client for ``service`` in ``region`` from ``session`` (one acting with resolved
    credentials), with retries and endpoint set."""
    return session.client(
        service,
        region_name=region,
        endpoint_url=endpoint_for(service, region, config),
        config=client_config(config, region),
    )
