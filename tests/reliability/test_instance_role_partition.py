"""A GovCloud worker on its instance role runs the daily ``validate-credentials [com, gov]``:
the role's keys are checked in GovCloud only, ``com`` is reported "not configured" (not
refused), and no request signed with the role's secret goes to a commercial endpoint.

The role comes from a local instance metadata service (``instance_metadata``) through boto3's
own default chain; ``SignatureTap`` checks each request's SigV4 signature against the role's
secret, so "signed with it" means signed with it, whatever key id a request carries.
"""

from __future__ import annotations

import pytest

from flows import validate_credentials
from flows.credentials.report import CheckStatus
from providers.partitions import partition_of_region
from tests.reliability.aws_signatures import SignatureTap
from tests.reliability.instance_metadata import InstanceRole, serve_instance_role
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

GOV_ACCOUNT = "333333333333"


@pytest.fixture
def govcloud_instance_role(ssm_world: SsmWorld, monkeypatch: pytest.MonkeyPatch) -> InstanceRole:
    """This worker as an EC2 instance in us-gov-west-1 whose instance profile is the only
    credential source: no keys in the environment (moto's fixture sets some), no block keys,
    no legacy variables."""
    keys = ssm_world.credentials(GOV_ACCOUNT, partition="aws-us-gov")
    role = InstanceRole(
        role_name="CloudOpsFlowsWorker",
        access_key_id=keys.access_key_id,
        secret_access_key=keys.secret_access_key,
        session_token="FwoGZXIvYXdzEXAMPLEGOVROLESESSION",
        region="us-gov-west-1",
    )
    # Emptied rather than removed: moto's fixture puts its keys back by name when it stops.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    for suffix in ("COM", "GOV"):
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(f"{variable}_{suffix}", raising=False)
    return role


# The worker's region setting: none (the usual instance), or a stale commercial one.
@pytest.mark.parametrize("configured_region", [None, "us-east-1"])
def test_the_instance_role_is_checked_in_its_own_partition_only(
    govcloud_instance_role: InstanceRole,
    ssm_world: SsmWorld,
    monkeypatch: pytest.MonkeyPatch,
    configured_region: str | None,
) -> None:
    role = govcloud_instance_role
    if configured_region:
        monkeypatch.setenv("AWS_DEFAULT_REGION", configured_region)
    else:
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    with serve_instance_role(role) as endpoint, SignatureTap().installed() as tap:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
        result = validate_credentials(environments=["com", "gov"], provider="aws")

    checks = {c.environment.value: c for c in result.checks}
    assert checks["gov"].status is CheckStatus.VALID
    assert checks["gov"].identity is not None
    assert checks["gov"].identity.partition == "aws-us-gov"
    assert checks["com"].status is CheckStatus.NOT_CONFIGURED
    assert "aws-us-gov" in (checks["com"].problem or "")
    signed_by_role = [r for r in tap.requests if r.signed_with(role.secret_access_key)]
    assert signed_by_role, "the role's keys were never used"
    endpoints = {r.url.split("/")[2] for r in signed_by_role}
    assert endpoints == {"sts.us-gov-west-1.amazonaws.com"}
    assert {r.session_token for r in signed_by_role} == {role.session_token}
    # Nothing of the role went anywhere else: no request carries its key id or its token.
    for request in tap.requests:
        if request.access_key_id == role.access_key_id or request.session_token:
            assert partition_of_region(request.url.split(".")[1]).name == "aws-us-gov"
    assert all("us-gov-" in r.host for r in ssm_world.requests)
