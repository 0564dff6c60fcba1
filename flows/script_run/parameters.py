"""Which script ``run-script`` runs: inline text, or a bundled script by name."""

from __future__ import annotations

from flows.common.remote_scripts import BundledScript, interpreter_for, load_script
from providers.base import Interpreter


def choose_script(
    script: str | None,
    script_name: BundledScript | str | None,
    interpreter: Interpreter | None,
) -> tuple[str, str, Interpreter]:
    """(label, text, interpreter) of the script to run, from inline text or a bundled name."""
    if bool(script) == bool(script_name):
        raise ValueError("give exactly one of `script` (inline text) or `script_name` (bundled)")
    if script_name:
        name = str(script_name.value if isinstance(script_name, BundledScript) else script_name)
        return name, load_script(name), interpreter or interpreter_for(name)
    assert script is not None
    return "inline", script, interpreter or Interpreter.BASH
