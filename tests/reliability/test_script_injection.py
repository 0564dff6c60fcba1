"""Shell injection through what a user gives ``run-script``: parameter values reach the script
quoted, and nothing else runs; bad parameter names, NUL bytes and hostile change numbers are
refused before any AWS call.

The rendered script goes through the AWS path for real (``SendCommand`` with the shebang or the
Python here-document the provider adds) and runs in the emulator's per-instance sandbox with
bash or python3. Every hostile value tries to create a marker file, by absolute path and
relative to the script's directory; the test then looks for any such file anywhere under the
test's directory (the sandboxes included) and checks that each value came back byte for byte.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from flows import run_script
from flows.changes import ChangeFileError
from providers.base import Interpreter, ResultStatus
from tests.reliability.fleet import build_fleet
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

MARKER = "pwned"


def hostile_values(absolute: Path) -> list[str]:
    """Values that would create ``absolute`` (or ``pwned`` in the working directory) if any
    of them were spliced into the script instead of quoted."""
    mark = str(absolute)
    return [
        f"$(touch {mark})",
        f"`touch {mark}`",
        f"'; touch {mark}; '",
        f'"; touch {mark}; "',
        f"\\'; touch {mark} #",
        f"x\ntouch {mark}",
        f"x\r\ntouch {mark}\r\n",
        f"$'\\n'touch {mark}",
        f"${{IFS}}touch${{IFS}}{mark}",
        f"&& touch {mark}",
        f"| touch {mark}",
        f"> {MARKER}",
        f">{mark}",
        f"x; touch {MARKER}",
        f'\\"$(touch {mark})\\"',
        f"EOF\ntouch {mark}\nEOF",
        f"CLOUDOPS_PYTHON_EOF\nimport os; os.system('touch {mark}')\nCLOUDOPS_PYTHON_EOF",
        f"'''; import os; os.system('touch {mark}'); '''",
        f'"""; __import__(\'os\').system(\'touch {mark}\'); """',
        f"{{__import__('os').system('touch {mark}')}}",
        "\u2018; touch pwned; \u2019",
        "trailing backslash \\",
        "%s%n%x",
        "-e",
        "",
    ]


SHELL_BODY = 'for name in {names}; do printf "<<%s>>\\n" "${{!name}}"; done\n'
PYTHON_BODY = (
    "import os, sys\n"
    "for name in {names!r}.split():\n"
    "    sys.stdout.write('<<' + os.environ[name] + '>>\\n')\n"
)


def _planted(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{MARKER}*") if p.name.startswith(MARKER)]


@pytest.mark.parametrize("interpreter", [Interpreter.BASH, Interpreter.SH, Interpreter.PYTHON])
def test_hostile_parameter_values_reach_the_script_as_plain_text(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path, interpreter: Interpreter
):
    targets = build_fleet(ssm_world, 4)
    ssm_world.command_delay(pending=0.05)
    values = hostile_values(tmp_path / MARKER)
    parameters = {f"P{n}": value for n, value in enumerate(values)}
    names = " ".join(parameters)
    if interpreter is Interpreter.PYTHON:
        body = PYTHON_BODY.format(names=names)
    elif interpreter is Interpreter.SH:
        # POSIX sh has no ${!name}: one printf per parameter.
        body = "".join(f'printf "<<%s>>\\n" "${name}"\n' for name in parameters)
    else:
        body = SHELL_BODY.format(names=names)

    result = run_script(
        script=body,
        interpreter=interpreter,
        parameters=parameters,
        targets=targets,
        provider=fast_aws,
    )

    expected = "".join(f"<<{value}>>\n" for value in values)
    for r in result.batch.results:
        assert r.status is ResultStatus.SUCCESS, r
        assert r.stdout == expected
    assert _planted(tmp_path) == []
    print(
        f"== injection, {interpreter.value}: {len(values)} hostile values x {len(targets)} "
        f"instances ran quoted; 0 marker files"
    )


@pytest.mark.parametrize(
    ("parameters", "refusal"),
    [
        ({"X; touch pwned": "v"}, "is not an upper-case identifier"),
        ({"PATH=/tmp/evil:$PATH GREETING": "v"}, "is not an upper-case identifier"),
        ({"lower": "v"}, "is not an upper-case identifier"),
        ({"GREETING": "a\0touch pwned"}, "contains a NUL byte"),
    ],
)
def test_bad_parameter_names_and_nul_bytes_are_refused_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, parameters: dict[str, str], refusal: str
):
    targets = build_fleet(ssm_world, 2)

    with pytest.raises(ValueError, match=refusal):
        run_script(script="true", parameters=parameters, targets=targets, provider=fast_aws)

    assert ssm_world.requests == []


HOSTILE_CHANGE_NUMBERS = [
    "CHG1; touch pwned",
    "CHG1$(touch pwned)",
    "CHG1`touch pwned`",
    "CHG1' || touch pwned '",
    "../../etc/cron.d/pwned",
    "CHG1\ntouch pwned",
    "CHG1 && touch pwned",
    "C" * 51,
]


@pytest.mark.parametrize("change", HOSTILE_CHANGE_NUMBERS)
def test_hostile_change_numbers_are_refused_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, change: str
):
    targets = build_fleet(ssm_world, 2)

    with pytest.raises(ValueError, match="not a valid change number"):
        run_script(script="true", change_number=change, targets=targets, provider=fast_aws)

    assert ssm_world.requests == []


def test_hostile_change_numbers_in_a_change_file_are_each_reported_and_nothing_runs(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path
):
    targets = build_fleet(ssm_world, len(HOSTILE_CHANGE_NUMBERS))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["change_number", "instance_id", "account_id", "region"])
    for change, t in zip(HOSTILE_CHANGE_NUMBERS, targets, strict=True):
        writer.writerow([change, t.instance_id, t.account_id, t.region])

    with pytest.raises(ChangeFileError) as refused:
        run_script(script="true", change_csv=buffer.getvalue(), provider=fast_aws)

    reported = {(p.row, p.column) for p in refused.value.problems}
    for row in range(2, len(HOSTILE_CHANGE_NUMBERS) + 2):
        assert (row, "change_number") in reported
    assert ssm_world.requests == []
    assert _planted(tmp_path) == []
