"""Fixtures for the block and registry tests: the Prefect test server, saved blocks that are
removed again, and a registry restored after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prefect.settings import PREFECT_API_URL

import blocks.registry as registry
from blocks import ProviderBlock


@pytest.fixture(scope="session")
def prefect_api_url(prefect_server: None) -> str:
    """The API URL of the session's temporary Prefect server (``prefect_test_harness``,
    started once by ``tests/conftest.py``), for subprocesses such as the CLI."""
    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness did not set PREFECT_API_URL"
    return url


SaveBlock = Callable[[ProviderBlock, str], ProviderBlock]


@pytest.fixture
def save_block(prefect_api_url: str) -> Iterator[SaveBlock]:
    """Save a provider block for one test and delete it afterwards, so that saved blocks
    never change how ``aws`` resolves in other tests sharing the server."""
    saved: list[tuple[type[ProviderBlock], str]] = []

    def save(block: ProviderBlock, name: str) -> ProviderBlock:
        block.save(name, overwrite=True)
        saved.append((type(block), name))
        return block

    yield save
    for block_class, name in saved:
        block_class.delete(name)


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Providers a test registers disappear after it."""
    monkeypatch.setattr(registry, "_registrations", dict(registry.registered_providers()))
