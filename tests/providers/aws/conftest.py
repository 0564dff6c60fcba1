"""Fixtures for the tests in this folder. The credential tests' fixtures live in
``credential_fixtures.py`` and are made visible here; add other fixtures below them."""

from tests.providers.aws.credential_fixtures import (  # noqa: F401 (fixtures)
    aws_wire,
    moto_aws,
    no_ambient_aws,
)
from tests.providers.aws.ssm_fixtures import fleet  # noqa: F401 (fixtures)
from tests.ssm_emulator.plugin import ssm_world  # noqa: F401 (fixtures)
