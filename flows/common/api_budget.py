"""A provider's API budget shared by every run: Prefect global rate limits per account and
region.

AWS rate-limits SSM calls per account and region, whoever makes them: two patch windows (or a
window and a run-script) in the same account and region share one budget. The engine's tasks
therefore take one slot of the Prefect global rate limit named after the provider's budget
(``ssm-<account>-<region>``, see ``Provider.api_budget``) before each call that spends it: each
``DescribeInstanceInformation`` page of a prepare, each ``SendCommand``, each poll round. Every
run on the same Prefect server draws from the same limit.

The limits are Prefect's own objects, made once per (account, region):

- with a command, e.g. ``prefect gcl create ssm-111122223333-us-east-1 --limit 20
  --slot-decay-per-second 10`` (20 calls at once, 10 a second on average); or
- on first use, when ``CLOUDOPS_SSM_CALLS_PER_SECOND`` is set (burst twice that).

Without a limit the call goes ahead at once, as before: a limit is looked up once a minute per
name, so a run never waits on one that does not exist, and never fails because of one (a limit
without slot decay, a Prefect API that does not answer: said once in the log, then ignored). A
slot not granted within ``CLOUDOPS_SSM_RATE_LIMIT_WAIT_SECONDS`` is given up with a warning and
the call goes ahead: AWS's own throttling, retried with backoff, still stands behind it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from flows.common.settings import get_settings
from providers.base import Provider

# How long a name found without a usable limit is taken as such before it is looked up again.
RECHECK_SECONDS = 60.0


@dataclass(frozen=True)
class _Known:
    usable: bool
    checked_at: float


_known: dict[str, _Known] = {}
_lock = threading.Lock()


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a flow or task run: this module's own logger
        return logging.getLogger(__name__)


def _look_up(name: str) -> bool:
    """Whether a limit ``name`` can rate-limit now: it exists (made now when the settings ask)
    and has a slot decay. Says once in the log why not."""
    settings = get_settings()
    try:
        with get_client(sync_client=True) as client:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                rate = settings.ssm_calls_per_second
                if rate <= 0:
                    return False
                try:
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(
                            name=name,
                            limit=max(1, math.ceil(2 * rate)),
                            slot_decay_per_second=rate,
                        )
                    )
                    _logger().info(
                        "created the Prefect rate limit %s: %s call(s) a second", name, rate
                    )
                except ObjectAlreadyExists:
                    pass  # another run made it a moment ago
                return True
    except Exception as exc:
        _logger().warning(
            "the Prefect rate limit %s could not be looked up (%s): not used", name, exc
        )
        return False
    if not limit.slot_decay_per_second:
        _logger().warning(
            "the Prefect limit %s has no slot decay, so it cannot rate-limit calls: not used "
            "(prefect gcl update %s --slot-decay-per-second N)",
            name,
            name,
        )
        return False
    return True


def _usable(name: str) -> bool:
    now = time.monotonic()
    with _lock:
        known = _known.get(name)
        if known is not None and (known.usable or now - known.checked_at < RECHECK_SECONDS):
            return known.usable
    usable = _look_up(name)
    with _lock:
        _known[name] = _Known(usable, now)
    return usable


def spend_api_budget(provider: Provider, account_id: str, region: str, calls: int = 1) -> None:
    """Wait for ``calls`` slots of the provider's API budget for ``account_id``/``region``
    (nothing to wait for when it has none, or when no Prefect limit of that name exists)."""
    name = provider.api_budget(account_id, region)
    if name is None or calls <= 0 or not _usable(name):
        return
    wait = get_settings().ssm_rate_limit_wait_seconds
    for _ in range(calls):
        try:
            # strict: a limit deleted meanwhile raises here instead of Prefect logging a warning
            # on every call.
            rate_limit(name, occupy=1, timeout_seconds=wait, strict=True)
        except TimeoutError:
            _logger().warning(
                "no slot of the rate limit %s within %.0f s: calling all the same", name, wait
            )
            return
        except Exception as exc:
            _logger().warning("the rate limit %s is not used any more: %s", name, exc)
            with _lock:
                _known[name] = _Known(False, time.monotonic())
            return


def forget_api_budgets() -> None:
    """Look every limit up again on next use (after limits were created or deleted)."""
    with _lock:
        _known.clear()
