"""The shape of the house, checked from the imports in the source (read with ``ast``).

- Rooms with one-way doors: ``flows`` may import ``blocks`` and ``providers``; ``blocks`` may
  import ``providers``; ``providers`` imports neither, and nothing of Prefect.
- No import cycle among the modules of ``flows``, ``blocks`` and ``providers`` (imports under
  ``TYPE_CHECKING`` count: a cycle of types is still a cycle a reader must untangle).
- A workflow package (a package of ``flows`` holding a ``flow.py``) imports no other workflow
  package; what two workflows share lives in ``flows.common`` or in the shared modules of
  their family (``flows.linux_patching.*``), and those import no workflow package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("flows", "blocks", "providers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found[module_name(path)] = path
    return found


MODULES = product_modules()


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, as far as it names one of ours (``from a import b``
    counts as importing ``a.b`` when that is a module, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in MODULES else base


def import_graph() -> dict[str, set[str]]:
    return {
        name: {target for target in imported(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def workflow_packages() -> list[str]:
    return sorted(module_name(p.parent) for p in (ROOT / "flows").rglob("flow.py"))


def workflow_of(module: str, packages: list[str]) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [("providers", ("flows", "blocks", "prefect")), ("blocks", ("flows",))],
)
def test_the_doors_between_rooms_open_one_way(room: str, forbidden: tuple[str, ...]) -> None:
    crossings = [
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if name.split(".")[0] == room
        for target in imported(path)
        if target.split(".")[0] in forbidden
    ]
    assert crossings == []


def test_the_workflow_packages_are_found() -> None:
    assert {
        "flows.credentials",
        "flows.script_run",
        "flows.linux_patching.prep",
        "flows.linux_patching.post",
        "flows.sft",
    } <= set(workflow_packages())


def test_no_workflow_package_imports_another_and_shared_code_imports_none() -> None:
    packages = workflow_packages()
    graph = import_graph()
    # The facades re-export for other code and scripts; nothing of ours imports them but the
    # entry points a person runs (the demo, the command line), which drive the workflows.
    facades = {"flows", "flows.parsers"}
    entry_points = ("flows.demo", "flows.cli")
    crossings = []
    for name, targets in graph.items():
        if name in facades or name.startswith(entry_points):
            continue
        own = workflow_of(name, packages)
        for target in targets:
            other = workflow_of(target, packages)
            if target in facades or (other is not None and other != own):
                crossings.append(f"{name} imports {target}")
    assert crossings == []


def test_the_public_surface_is_kept() -> None:
    from blocks import AwsProviderBlock, LocalProviderBlock, load_provider
    from flows import (
        linux_qc_patching_post,
        linux_qc_patching_prep,
        run_script,
        sft_fixer,
        validate_credentials,
    )
    from flows.changes import ChangeFileError, parse_change_csv
    from flows.parsers import parse_post_report, parse_qc_report, parse_sft_detection
    from providers.base import ResultStatus, ScriptResult, Target

    flows_ = [
        validate_credentials,
        run_script,
        linux_qc_patching_prep,
        linux_qc_patching_post,
        sft_fixer,
    ]
    assert all(hasattr(f, "fn") for f in flows_)  # Prefect flows, not their modules
    assert callable(load_provider("local").execute_script_batch)
    for thing in (
        AwsProviderBlock,
        LocalProviderBlock,
        ChangeFileError,
        parse_change_csv,
        parse_post_report,
        parse_qc_report,
        parse_sft_detection,
        ResultStatus,
        ScriptResult,
        Target,
    ):
        assert thing is not None
