"""Every command explains itself with ``--help``; a wrong command line exits 2."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from flows.cli.app import app
from tests.flows.cli.conftest import Cloudops


def command_paths() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = [()]

    def walk(command: Any, path: tuple[str, ...]) -> None:
        # Typer 0.29 carries its own copy of Click: a group is what has sub-commands.
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*path, name))
            walk(sub, (*path, name))

    walk(root, ())
    return paths


def test_the_commands_are_all_there() -> None:
    assert set(command_paths()) >= {
        ("changes", "list"),
        ("changes", "show"),
        ("changes", "diff"),
        ("changes", "import"),
        ("history",),
        ("report",),
        ("resume",),
        ("doctor",),
        ("automations", "render"),
    }


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "cloudops")
def test_every_command_has_help(cloudops: Cloudops, path: tuple[str, ...]) -> None:
    shown = cloudops(*path, "--help")
    assert shown.exit_code == 0
    assert "Usage: cloudops" in shown.stdout


def test_a_wrong_command_line_exits_2(cloudops: Cloudops) -> None:
    assert cloudops("no-such-command").exit_code == 2
    assert cloudops("history").exit_code == 2  # the change is required
    assert cloudops("changes", "diff", "CHG1", "--version", "zero").exit_code == 2
