"""boto3 clients configured the same way everywhere: adaptive retries, the right endpoint."""

from __future__ import annotations

from typing import Any, Literal

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from providers.aws.config import AwsProviderConfig
from providers.partitions import partition_of_region

# The services these flows call.
ServiceName = Literal["ssm", "sts", "ec2", "s3", "organizations"]

# Lets AWS-side logs (CloudTrail user agent) tell these flows' calls apart from others.
_USER_AGENT_EXTRA = "cloudops-flows"
# A botocore Config option (botocore >= 1.31) that the type stubs installed here predate.
_IGNORE_CONFIGURED_ENDPOINTS: dict[str, Any] = {"ignore_configured_endpoint_urls": True}


def client_config(
    config: AwsProviderConfig, region: str, *, single_attempt: bool = False
) -> Config:
    """botocore settings for every client: adaptive retry mode, so throttling slows the client
    down instead of failing it; ``config.max_attempts`` is the number of retries after the
    first attempt (botocore's meaning of ``max_attempts``).

    ``single_attempt``: botocore never repeats a request. For a call that creates something
    (``SendCommand``): botocore retries a connection fault like any other, and when the fault
    lost the answer rather than the request, its retry creates the thing twice. The caller
    repeats such a call itself, only when it knows that is safe.

    Endpoint overrides of the worker's environment and AWS config file (``AWS_ENDPOINT_URL``,
    ``AWS_ENDPOINT_URL_SSM`` and the other ``AWS_ENDPOINT_URL_<SERVICE>``, ``endpoint_url``
    and ``services`` sections) are ignored: they would send requests signed with one
    partition's keys to whatever host they name. The one override is the block's own
    ``endpoint_url`` (a VPC endpoint, a test server), an explicit setting of the provider.
    """
    if single_attempt:
        return Config(
            region_name=region,
            retries={"mode": "adaptive", "total_max_attempts": 1},
            user_agent_extra=_USER_AGENT_EXTRA,
            **_IGNORE_CONFIGURED_ENDPOINTS,
        )
    return Config(
        region_name=region,
        retries={"mode": "adaptive", "max_attempts": config.max_attempts},
        user_agent_extra=_USER_AGENT_EXTRA,
        **_IGNORE_CONFIGURED_ENDPOINTS,
    )


def endpoint_for(service: ServiceName, region: str, config: AwsProviderConfig) -> str | None:
    """The endpoint a client of ``service`` in ``region`` talks to.

    ``config.endpoint_url`` (a VPC endpoint, a test server) wins. STS always gets the regional
    endpoint of the region's partition: the global ``sts.amazonaws.com`` does not exist in
    GovCloud and would send GovCloud keys to the commercial partition. Other services use
    botocore's resolution for the region (``None``), which stays in the region's partition
    because configured endpoint overrides are ignored (``client_config``).
    """
    if config.endpoint_url:
        return config.endpoint_url
    if service == "sts":
        return partition_of_region(region).sts_endpoint(region)
    return None


def make_client(
    session: boto3.session.Session,
    service: ServiceName,
    region: str,
    config: AwsProviderConfig,
    *,
    single_attempt: bool = False,
) -> BaseClient:
    """A boto3 client for ``service`` in ``region`` from ``session`` (one acting with resolved
    credentials), with retries and endpoint set (see ``client_config``)."""
    return session.client(
        service,
        region_name=region,
        endpoint_url=endpoint_for(service, region, config),
        config=client_config(config, region, single_attempt=single_attempt),
    )
