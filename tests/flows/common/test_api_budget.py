"""The SSM API budget shared by every run (Prefect global rate limits ``ssm-<account>-<region>``)
when the limit is missing, unusable, or made on first use: a run never waits forever and never
fails because of it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound

from flows.common.api_budget import forget_api_budgets, spend_api_budget
from providers.aws.provider import AwsProvider
from providers.local import LocalProvider

pytestmark = pytest.mark.usefixtures("prefect_server")

ACCOUNT = "444455556666"


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    forget_api_budgets()
    yield
    forget_api_budgets()
    with get_client(sync_client=True) as client:
        for region in ("eu-west-1", "eu-west-2", "eu-west-3"):
            with contextlib.suppress(ObjectNotFound):
                client.delete_global_concurrency_limit_by_name(f"ssm-{ACCOUNT}-{region}")


def limit(name: str) -> object | None:
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None


def test_without_a_limit_a_call_goes_at_once_and_nothing_is_made() -> None:
    for _ in range(20):
        spend_api_budget(AwsProvider(), ACCOUNT, "eu-west-1", calls=3)

    assert limit(f"ssm-{ACCOUNT}-eu-west-1") is None
    # The local provider has no API budget to spend at all.
    spend_api_budget(LocalProvider(), "local", "local")


def test_a_limit_without_slot_decay_is_said_once_and_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"ssm-{ACCOUNT}-eu-west-2"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))

    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            spend_api_budget(AwsProvider(), ACCOUNT, "eu-west-2")

    said = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(said) == 1 and "has no slot decay" in said[0]


def test_a_limit_is_made_on_first_use_when_a_rate_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDOPS_SSM_CALLS_PER_SECOND", "7.5")

    spend_api_budget(AwsProvider(), ACCOUNT, "eu-west-3")

    made = limit(f"ssm-{ACCOUNT}-eu-west-3")
    assert made is not None
    assert (made.limit, made.slot_decay_per_second) == (15, 7.5)  # type: ignore[attr-defined]
