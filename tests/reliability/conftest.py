"""Fixtures of the reliability tests: the SSM emulator, fast-polling ``aws-provider`` blocks
(in this process, and over HTTP for flow runs in other processes), and a store database of each
kind (a SQLite file; a fresh database on the PostgreSQL server of ``.ci/postgres.sh``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks import AwsProviderBlock
from tests.flows.store.conftest import fresh_postgres_database, postgres_server_url
from tests.reliability.fleet import CALLER_ACCOUNT
from tests.ssm_emulator.http_bridge import serve_world
from tests.ssm_emulator.plugin import ssm_world  # noqa: F401 (fixture)
from tests.ssm_emulator.world import SsmWorld

FAST_BLOCK = "reliability"
BRIDGED_BLOCK = "reliability-bridged"


@pytest.fixture
def fast_aws(ssm_world: SsmWorld) -> Iterator[str]:  # noqa: F811 (the fixture above)
    """An aws-provider block that polls every 0.1 to 0.3 s, saved; yields its slug."""
    AwsProviderBlock(poll_initial_seconds=0.1, poll_max_seconds=0.3).save(
        FAST_BLOCK, overwrite=True
    )
    yield f"aws-provider/{FAST_BLOCK}"
    AwsProviderBlock.delete(FAST_BLOCK)


@pytest.fixture
def bridged_aws(ssm_world: SsmWorld) -> Iterator[str]:  # noqa: F811 (the fixture above)
    """An aws-provider block for flow runs in other processes: its endpoint is the emulator
    served over HTTP, its keys those of an IAM user of the caller account. Yields its slug."""
    keys = ssm_world.credentials(CALLER_ACCOUNT)
    with serve_world(ssm_world) as endpoint:
        AwsProviderBlock(
            access_key_id=keys.access_key_id,
            secret_access_key=keys.secret_access_key,
            endpoint_url=endpoint,
            poll_initial_seconds=0.2,
            poll_max_seconds=0.5,
        ).save(BRIDGED_BLOCK, overwrite=True)
        yield f"aws-provider/{BRIDGED_BLOCK}"
    AwsProviderBlock.delete(BRIDGED_BLOCK)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
) -> Iterator[str]:
    """A store database of each kind, set as ``DATABASE_URL`` for the flows of the test (after
    ``data_dir``, which clears it)."""
    if request.param == "sqlite":
        # The store creates only the data directory; a DATABASE_URL directory must exist.
        (tmp_path / "store").mkdir(mode=0o700)
        url = f"sqlite:///{tmp_path / 'store' / 'cloudops.db'}"
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        return
    with fresh_postgres_database(postgres_server_url()) as url:
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
