"""Finding what there is to run on: instances (EC2 and SSM), accounts (Organizations) and
regions (EC2), for one account and region at a time.

Functions take boto3 clients and let ``ClientError`` through, except where AWS's refusal is an
answer in itself (Organizations not in use: the caller's own account is the list).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from providers.aws.errors import error_code
from providers.aws.precheck import describe_managed_instances
from providers.base import Account, DiscoveryFilter, Instance, Platform
from providers.partitions import Environment, environment_of_region, partition_for

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef
    from mypy_boto3_organizations import OrganizationsClient
    from mypy_boto3_ssm import SSMClient

logger = logging.getLogger(__name__)

# Organizations' answers meaning "there is no organization you may list", not a failure.
_NO_ORGANIZATION = frozenset({"AWSOrganizationsNotInUseException", "AccessDeniedException"})
_ENABLED = frozenset({"opt-in-not-required", "opted-in"})


def platform_of(instance: InstanceTypeDef) -> Platform:
    """EC2 sets ``Platform`` only for Windows; ``PlatformDetails`` names it too."""
    if (instance.get("Platform") or "").lower() == "windows":
        return Platform.WINDOWS
    if "windows" in (instance.get("PlatformDetails") or "").lower():
        return Platform.WINDOWS
    return Platform.LINUX


def ec2_filters(filters: DiscoveryFilter) -> list[FilterTypeDef]:
    """DescribeInstances filters for the tags and states asked for."""
    found: list[FilterTypeDef] = [
        {"Name": f"tag:{key}", "Values": [value]} for key, value in sorted(filters.tags.items())
    ]
    if filters.states:
        found.append({"Name": "instance-state-name", "Values": list(filters.states)})
    return found


def discover_instances(
    ec2: EC2Client, ssm: SSMClient, account_id: str, region: str, filters: DiscoveryFilter
) -> list[Instance]:
    """Instances of one account and region matching ``filters``, with SSM's view of each."""
    found: list[Instance] = []
    paginator = ec2.get_paginator("describe_instances")
    for page in paginator.paginate(Filters=ec2_filters(filters)):
        for reservation in page.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                platform = platform_of(raw)
                if filters.platform is not None and platform is not filters.platform:
                    continue
                tags = {t["Key"]: t.get("Value", "") for t in raw.get("Tags", [])}
                found.append(
                    Instance(
                        instance_id=raw["InstanceId"],
                        name=tags.get("Name"),
                        state=raw.get("State", {}).get("Name", "unknown"),
                        platform=platform,
                        tags=tags,
                        account_id=account_id,
                        region=region,
                        environment=environment_of_region(region),
                    )
                )
    if not found:
        return []
    managed = describe_managed_instances(ssm, [i.instance_id for i in found])
    for instance in found:
        info = managed.get(instance.instance_id)
        if info is not None:
            instance.ssm_managed = True
            instance.ping_status = info.ping_status
    return found


def enumerate_accounts(
    organizations: OrganizationsClient, environment: Environment, own_account: Callable[[], str]
) -> list[Account]:
    """Active accounts of the organization; the caller's own account (``own_account()``)
    when there is no organization or the caller may not list it, with a warning saying so."""
    accounts: list[Account] = []
    try:
        for page in organizations.get_paginator("list_accounts").paginate():
            for raw in page.get("Accounts", []):
                if raw.get("Status", "ACTIVE") != "ACTIVE":
                    continue
                accounts.append(
                    Account(
                        account_id=raw["Id"], account_name=raw.get("Name"), environment=environment
                    )
                )
    except ClientError as exc:
        code = error_code(exc)
        if code not in _NO_ORGANIZATION:
            raise
        return [_own_account(environment, own_account(), f"Organizations answered {code}")]
    if not accounts:
        return [_own_account(environment, own_account(), "Organizations listed no account")]
    return sorted(accounts, key=lambda a: a.account_id)


def _own_account(environment: Environment, account_id: str, why: str) -> Account:
    logger.warning(
        "%s in %s: listing only the caller's own account %s (to list every account, run from "
        "the management account or a delegated administrator allowed "
        "organizations:ListAccounts)",
        why,
        environment.value,
        account_id,
    )
    return Account(account_id=account_id, environment=environment)


def enumerate_regions(ec2: EC2Client, environment: Environment) -> list[str]:
    """Regions of ``environment``'s partition that the account has enabled."""
    partition = partition_for(environment)
    reply = ec2.describe_regions()
    return sorted(
        r["RegionName"]
        for r in reply.get("Regions", [])
        if r.get("OptInStatus", "opt-in-not-required") in _ENABLED
        and r["RegionName"] in partition.regions
    )
