"""Fixtures for flow tests: the SSM emulator world and the AWS wire tap of the credential
tests, shared from where they are defined."""

from prefect.testing.fixtures import asserting_events_worker  # noqa: F401 (fixture)

from tests.providers.aws.credential_fixtures import (  # noqa: F401 (fixtures)
    aws_wire,
    moto_aws,
    no_ambient_aws,
)
from tests.ssm_emulator.plugin import ssm_world  # noqa: F401 (fixtures)
