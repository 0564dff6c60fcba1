"""Change files as the teams write them, for the parser tests."""

from __future__ import annotations

import pytest

from flows.changes import ChangeSpec
from providers.base import Platform, Target

# The two layouts the old tool's sample files used.
OLD_TOOL_LAYOUT_A = (
    "Change_number,Platform,Region,AccountID,InstanceID\n"
    "CHG0012345,Linux,us-east-1,012345678901,i-0123456789abcdef0\n"
    "CHG0012345,Windows,us-gov-west-1,123456789012,i-0fedcba9876543210\n"
)
OLD_TOOL_LAYOUT_B = (
    "change_number,instance_id,account_id,region,platform,name\n"
    "CHG0012345,i-0123456789abcdef0,012345678901,us-east-1,linux,\n"
    "CHG0012345,i-0fedcba9876543210,123456789012,us-gov-west-1,windows,\n"
)


@pytest.fixture
def two_instance_change() -> ChangeSpec:
    """What both old layouts describe."""
    return ChangeSpec(
        change_number="CHG0012345",
        targets=[
            Target(
                instance_id="i-0123456789abcdef0",
                account_id="012345678901",
                region="us-east-1",
                platform=Platform.LINUX,
            ),
            Target(
                instance_id="i-0fedcba9876543210",
                account_id="123456789012",
                region="us-gov-west-1",
                platform=Platform.WINDOWS,
            ),
        ],
    )
