"""Faults a test asks for: a share of throttled calls, and errors injected on named operations.

Both are decided per HTTP request (per attempt, so botocore's retries draw again), under a
lock, from a seeded random generator: a given seed throttles the same share of calls on
every run, whatever the order the threads happen to call in.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """An error answer the emulator gives instead of the real one."""

    code: str
    message: str
    status: int = 400
    throttling: bool = False


@dataclass
class _InjectedFault:
    operation: str
    service: str | None
    fault: Fault
    skip: int
    times: int


class FaultPlan:
    """Which requests fail, and how. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._share = 0.0
        self._services: frozenset[str] = frozenset()
        self._rng = random.Random(0)
        self._injected: list[_InjectedFault] = []

    def throttle(self, share: float, services: Iterable[str], seed: int) -> None:
        if not 0.0 <= share < 1.0:
            raise ValueError(f"throttle share must be in [0, 1), got {share}")
        with self._lock:
            self._share = share
            self._services = frozenset(services)
            self._rng = random.Random(seed)

    def fail_next(
        self,
        operation: str,
        code: str,
        *,
        times: int,
        after: int,
        message: str,
        status: int,
        service: str | None,
    ) -> None:
        if times < 1 or after < 0:
            raise ValueError("fail_next needs times >= 1 and after >= 0")
        with self._lock:
            self._injected.append(
                _InjectedFault(operation, service, Fault(code, message, status), after, times)
            )

    def decide(self, service: str, operation: str) -> Fault | None:
        """The fault for this request, if any. Injected faults come before throttling."""
        with self._lock:
            chosen: Fault | None = None
            # Every injection counts every request of its operation, fired or not, so that
            # ``after`` always means "after that many requests from when it was asked for".
            for injected in self._injected:
                if injected.operation != operation or injected.service not in (None, service):
                    continue
                if injected.skip:
                    injected.skip -= 1
                elif injected.times and chosen is None:
                    injected.times -= 1
                    chosen = injected.fault
            if chosen is not None:
                return chosen
            if service in self._services and self._rng.random() < self._share:
                return Fault("", "Rate exceeded", throttling=True)
        return None

    def pending_injections(self) -> int:
        """How many injected errors have not been answered yet."""
        with self._lock:
            return sum(i.times for i in self._injected)
