"""The CloudOps flows, one package per workflow, and what they share (``flows.common``).

Every flow is importable from here, ``from flows import linux_qc_patching_prep``; the flow
modules are loaded on first use, so importing ``flows.store`` or ``flows.changes`` does not
pull in every workflow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Flow function name -> the module that defines it (also the deployments' entrypoints).
FLOW_MODULES: dict[str, str] = {
    "validate_credentials": "flows.credentials.flow",
    "run_script": "flows.script_run.flow",
    "linux_qc_patching_prep": "flows.linux_patching.prep.flow",
    "linux_qc_patching_post": "flows.linux_patching.post.flow",
    "linux_qc_patching_window": "flows.linux_patching.window.flow",
    "sft_fixer": "flows.sft.flow",
}

__all__ = [
    "linux_qc_patching_post",
    "linux_qc_patching_prep",
    "linux_qc_patching_window",
    "run_script",
    "sft_fixer",
    "validate_credentials",
]

if TYPE_CHECKING:
    from flows.credentials.flow import validate_credentials
    from flows.linux_patching.post.flow import linux_qc_patching_post
    from flows.linux_patching.prep.flow import linux_qc_patching_prep
    from flows.linux_patching.window.flow import linux_qc_patching_window
    from flows.script_run.flow import run_script
    from flows.sft.flow import sft_fixer


def __getattr__(name: str) -> Any:
    module = FLOW_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'flows' has no attribute {name!r}")
    return getattr(import_module(module), name)
