"""A single timer thread that runs short callbacks at given times (the SSM service's clock)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Scheduler:
    """Runs each callback at (or just after) its due time, in due order, on one thread.

    Callbacks must be quick: long work (a script) is handed to a thread pool by the callback.
    """

    def __init__(self, name: str = "ssm-emulator-clock") -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._stopped = False
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_at(self, due: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` at epoch time ``due``."""
        with self._cond:
            heapq.heappush(self._queue, (due, next(self._order), callback))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.time()):
                    wait = self._queue[0][0] - time.time() if self._queue else None
                    self._cond.wait(timeout=wait)
                if self._stopped:
                    return
                _, _, callback = heapq.heappop(self._queue)
            try:
                callback()
            except Exception as exc:  # kept for the world to raise at teardown; the clock goes on
                self.errors.append(exc)
