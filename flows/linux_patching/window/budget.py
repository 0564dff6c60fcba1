"""The change-wide error budget: how many instances may fail before no new wave starts.

SSM's own ``MaxErrors`` counts within one command (at most 50 instances of one account and
region); a change spans many accounts and regions, so the window counts failures itself, over
every wave so far. A failure is an instance that ended ``install_failed``, ``wrong_kernel``,
``reboot_timed_out`` or ``post_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ErrorBudget:
    """``allowed`` failures for the whole window; a person's ``continue`` accepts the failures
    seen so far, so the next halt comes with the next new failure past that."""

    allowed: int
    accepted: int = 0

    def spent(self, failures: int) -> bool:
        """More failures than the budget (and than a person already accepted)."""
        return failures > max(self.allowed, self.accepted)

    def accept(self, failures: int) -> None:
        """A person chose to continue with ``failures`` failures."""
        self.accepted = max(self.accepted, failures)

    def describe(self, failures: int) -> str:
        """``3 failure(s), budget 2``, and what was accepted, for a person."""
        text = f"{failures} failure(s), budget {self.allowed}"
        if self.accepted > self.allowed:
            text += f" (continued at {self.accepted})"
        return text
