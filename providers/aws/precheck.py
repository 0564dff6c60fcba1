"""Check targets before anything is sent to them.

A target that cannot run the script gets its own result here (``error`` for a malformed
target, ``skipped`` for the wrong platform, ``not_managed`` or ``offline`` from SSM's own
view of it) so that it is never put in a ``SendCommand``: one bad id there fails the whole
call, and with it its 49 neighbours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from providers.base import Platform, ResultStatus, ScriptRequest, ScriptResult, Target
from providers.partitions import region_problem

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
ACCOUNT_ID = re.compile(r"^\d{12}$")

# DescribeInstanceInformation accepts up to 100 values per filter and returns at most 50 per
# page; asking for 50 ids at a time makes one call per 50 targets in the usual case.
IDS_PER_CALL = 50
PAGE_SIZE = 50


class ManagedInstance(BaseModel):
    """What SSM knows of an instance (DescribeInstanceInformation)."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    ping_status: str
    platform_type: str | None = None

    @property
    def platform(self) -> Platform:
        """SSM's platform type as ours; macOS runs shell documents like Linux."""
        return Platform.WINDOWS if self.platform_type == "Windows" else Platform.LINUX


def target_problem(target: Target) -> str | None:
    """Why a target cannot be addressed, or None."""
    if not INSTANCE_ID.match(target.instance_id):
        return (
            f"instance {target.instance_id!r} is not an EC2 instance id "
            "('i-' and 8 or 17 lower-case hex digits): correct the target list"
        )
    if not ACCOUNT_ID.match(target.account_id):
        hint = ""
        if target.account_id.isdigit() and len(target.account_id) < 12:
            hint = " (a spreadsheet may have dropped its leading zeros)"
        return (
            f"instance {target.instance_id}: account id {target.account_id!r} is not 12 "
            f"digits{hint}: correct the target list"
        )
    problem = region_problem(target.region, f"instance {target.instance_id}")
    if problem is not None:
        return f"{problem}: correct the target list"
    return None


def platform_mismatch(target: Target, platform: Platform, request: ScriptRequest) -> str | None:
    """Why a script of ``request`` must not go to a ``platform`` target, or None."""
    if platform is request.platform:
        return None
    return (
        f"instance {target.instance_id} is {platform.value}; a {request.interpreter.value} "
        f"script runs only on {request.platform.value}: not sent"
    )


def validate_targets(
    targets: Iterable[Target], request: ScriptRequest
) -> tuple[list[Target], list[ScriptResult]]:
    """Well-formed targets of the script's platform, and results for the others.

    A target listed twice is kept once, so it gets one result.
    """
    seen: set[tuple[str, str, str]] = set()
    valid: list[Target] = []
    results: list[ScriptResult] = []
    for target in targets:
        identity = (target.account_id, target.region, target.instance_id)
        if identity in seen:
            continue
        seen.add(identity)
        problem = target_problem(target)
        if problem:
            results.append(ScriptResult.without_running(target, ResultStatus.ERROR, problem))
            continue
        mismatch = platform_mismatch(target, target.platform, request)
        if mismatch:
            results.append(ScriptResult.without_running(target, ResultStatus.SKIPPED, mismatch))
            continue
        valid.append(target)
    return valid, results


def describe_managed_instances(
    ssm: SSMClient, instance_ids: Sequence[str]
) -> dict[str, ManagedInstance]:
    """SSM's record of each of ``instance_ids`` it knows; unknown ids are simply absent."""
    found: dict[str, ManagedInstance] = {}
    paginator = ssm.get_paginator("describe_instance_information")
    for start in range(0, len(instance_ids), IDS_PER_CALL):
        batch = list(instance_ids[start : start + IDS_PER_CALL])
        pages = paginator.paginate(
            Filters=[{"Key": "InstanceIds", "Values": batch}],
            PaginationConfig={"PageSize": PAGE_SIZE},
        )
        for page in pages:
            for info in page.get("InstanceInformationList", []):
                managed = ManagedInstance(
                    instance_id=info["InstanceId"],
                    ping_status=info.get("PingStatus") or "Unknown",
                    platform_type=info.get("PlatformType"),
                )
                found[managed.instance_id] = managed
    return found


def check_registration(
    targets: Sequence[Target],
    managed: dict[str, ManagedInstance],
    request: ScriptRequest,
) -> tuple[list[Target], list[ScriptResult]]:
    """Targets SSM can run the script on now, and results for those it cannot."""
    ready: list[Target] = []
    results: list[ScriptResult] = []
    for target in targets:
        info = managed.get(target.instance_id)
        if info is None:
            results.append(
                ScriptResult.without_running(
                    target,
                    ResultStatus.NOT_MANAGED,
                    f"instance {target.instance_id} is not registered with SSM in account "
                    f"{target.account_id} region {target.region}: check the SSM agent and "
                    "instance profile",
                )
            )
            continue
        if info.ping_status != "Online":
            results.append(
                ScriptResult.without_running(
                    target,
                    ResultStatus.OFFLINE,
                    f"instance {target.instance_id}'s SSM agent is {info.ping_status}, not "
                    f"Online (account {target.account_id} region {target.region}): start the "
                    "instance or its agent, then run again",
                )
            )
            continue
        mismatch = platform_mismatch(target, info.platform, request)
        if mismatch:
            results.append(
                ScriptResult.without_running(
                    target, ResultStatus.SKIPPED, f"{mismatch} (SSM reports {info.platform_type})"
                )
            )
            continue
        ready.append(target)
    return ready, results
