"""Refusing a flow's parameters: every problem at once, before anything is sent."""

from __future__ import annotations

from typing import ClassVar


class ParameterError(ValueError):
    """One or more parameters of a workflow are not acceptable; every problem is listed.

    Each workflow subclasses it with its own ``workflow`` name, so a caller can catch one
    workflow's refusals or all of them.
    """

    workflow: ClassVar[str] = "the flow"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"- {problem}" for problem in problems)
        super().__init__(f"{self.workflow} refused its parameters; nothing was sent:\n{listed}")
