"""The README's command-line examples for the local provider, run literally.

The block after the ``local-examples`` marker in README.md is read as a person would paste it
into a shell: each command (continuation lines joined) runs in bash from the repository root
against the deployed stack, with a worker on the pool. Each must exit 0 and its run must end
in a Completed-type state named after what it did; so an example that rots fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import PREFECT, REPO_ROOT, PrefectStack

MARKER = "<!-- local-examples:"
COMMAND_SECONDS = 600
_FLOW_RUN_ID = re.compile(r"UUID:\s*([0-9a-f-]{36})")


def readme_examples(readme: Path = REPO_ROOT / "README.md") -> list[str]:
    """The commands of the fenced block that follows the marker, continuations joined."""
    text = readme.read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    block = after.split("```bash\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    current = ""
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            commands.append(" ".join(current.split()))
            current = ""
    return commands


def test_the_examples_are_found_and_use_the_local_provider() -> None:
    commands = readme_examples()
    assert len(commands) == 5
    assert all(c.startswith("prefect deployment run ") for c in commands)
    assert all("--param provider=local" in c and c.endswith("--watch") for c in commands)


@pytest.fixture(scope="module")
def worker(prefect_stack: PrefectStack) -> Iterator[None]:
    process = prefect_stack.start_worker("readme-worker", limit=1)
    try:
        yield
    finally:
        from tests.deploy.conftest import stop_process_group

        stop_process_group(process)
        prefect_stack.processes.remove(process)


EXPECTED_NAMES = [
    "credentials com gov",
    "run-script host_facts.sh adhoc",
    "prep DEMO-0001",
    "post DEMO-0001",
    "sft-fixer detect 1 instance(s)",
]


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(("position", "name"), list(enumerate(EXPECTED_NAMES)), ids=EXPECTED_NAMES)
def test_each_readme_example_runs_as_written(
    prefect_stack: PrefectStack, tmp_path: Path, position: int, name: str
) -> None:
    command = readme_examples()[position]
    env = {
        **prefect_stack.env,
        "PATH": f"{PREFECT.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),  # the examples' change folder goes under $HOME
    }
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )

    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    found = _FLOW_RUN_ID.search(done.stdout)
    assert found, done.stdout
    with prefect_stack.client() as client:
        run = client.read_flow_run(uuid.UUID(found.group(1)))
    assert run.name == name
    assert run.state is not None and run.state.is_completed()
    assert run.state.name in ("Completed", "Needs attention")
    assert f"Flow run finished successfully in {run.state.name!r}" in done.stdout
