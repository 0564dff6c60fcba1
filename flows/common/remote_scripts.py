"""The scripts flows send to servers, kept as real files under ``flows/scripts/``.

A script takes its parameters from environment variables set in a header that this module
writes in front of it. Every value is validated by the flow first and quoted here, so no text
a user typed is ever spliced into a script unquoted.

Scripts name absolute paths through ``$CLOUDOPS_ROOT`` (empty on a real server) so that the
tests can run them for real inside a sandbox directory.

What several scripts need the same way (the checks of the folders they write in) lives once,
in a library under ``flows/scripts/<platform>/lib/``: a script says where it wants it with a
line ``# cloudops-include: <file>``, and ``load_script`` puts the library's text there, so the
script that travels to the server is whole and the checks are never copied by hand.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources

from providers.base import Interpreter

_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_SCRIPT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*\.(sh|ps1)$")
_INCLUDE = re.compile(r"^# cloudops-include: (?P<name>[a-z0-9_]+\.(?:sh|ps1))$", re.MULTILINE)


class ScriptNotFoundError(LookupError):
    pass


def available_scripts() -> list[str]:
    """Bundled scripts by name, such as ``linux/qc.sh``."""
    root = resources.files("flows") / "scripts"
    names: list[str] = []
    for platform_dir in root.iterdir():
        if platform_dir.is_dir():
            names.extend(
                f"{platform_dir.name}/{f.name}"
                for f in platform_dir.iterdir()
                if f.name.endswith((".sh", ".ps1"))
            )
    return sorted(names)


def _member_name(script: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", script).strip("_").upper()


# The bundled scripts as choices, so a deployment's form offers a drop-down, not free text;
# built from the files, so a new script file is a new choice.
BundledScript = StrEnum(  # type: ignore[misc]
    "BundledScript", {_member_name(name): name for name in available_scripts()}
)


def load_script(name: str) -> str:
    """The text of a bundled script, by name (``linux/qc.sh``), with the libraries it
    includes (``# cloudops-include: change_folder.sh``) written in at their lines."""
    if not _SCRIPT_NAME.match(name) or name not in available_scripts():
        raise ScriptNotFoundError(
            f"no bundled script {name!r}; available: {', '.join(available_scripts())}"
        )
    scripts = resources.files("flows") / "scripts"
    text = (scripts / name).read_text(encoding="utf-8")
    library = scripts / name.split("/", 1)[0] / "lib"

    def included(match: re.Match[str]) -> str:
        path = library / match["name"]
        if not path.is_file():
            raise ScriptNotFoundError(f"{name} includes {match['name']}, which is not in {library}")
        return path.read_text(encoding="utf-8").rstrip("\n")

    return _INCLUDE.sub(included, text)


def interpreter_for(name: str) -> Interpreter:
    return Interpreter.POWERSHELL if name.endswith(".ps1") else Interpreter.BASH


# PowerShell's single-quote characters: the ASCII one and the four typographic ones, which the
# tokenizer also accepts to open, close or escape a verbatim string (language specification,
# section 2.3.5.2). Word processors and ticket systems turn ' into U+2019 on their own.
_POWERSHELL_SINGLE_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")


def _quote_powershell(value: str) -> str:
    # In a single-quoted PowerShell string only the quote characters are special; each is
    # doubled, so it stays inside the string as itself.
    return "'" + _POWERSHELL_SINGLE_QUOTES.sub(lambda m: m.group() * 2, value) + "'"


def render_script(
    body: str, params: Mapping[str, str], interpreter: Interpreter = Interpreter.BASH
) -> str:
    """``body`` preceded by one quoted assignment per parameter."""
    lines: list[str] = []
    for key, value in params.items():
        if not _NAME.match(key):
            raise ValueError(f"script parameter name {key!r} is not an upper-case identifier")
        if "\0" in value:
            raise ValueError(f"script parameter {key} contains a NUL byte")
        if interpreter is Interpreter.POWERSHELL:
            lines.append(f"$env:{key} = {_quote_powershell(value)}")
        elif interpreter is Interpreter.PYTHON:
            lines.append(f"import os; os.environ[{key!r}] = {value!r}")
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    if not lines:
        return body
    header = "\n".join(lines) + "\n"
    if body.startswith("#!"):
        shebang, _, rest = body.partition("\n")
        return f"{shebang}\n{header}{rest}"
    return header + body
