"""``cloudops resume``: answer a paused run from a terminal, with the form the UI would show.

A run that pauses for input (``pause_flow_run(wait_for_input=SomeRunInput)``) stores its form's
JSON schema on the server under the keys of its pause (``state_details.run_input_keyset``). This
command reads that schema, builds the answer from the options, refuses what the form would
refuse (the server's own validator on that schema, then the form's model when it is one of ours,
which also rejects e.g. a blank approver), shows the answer, and resumes the run with it, so it
answers any form, including ones added after this command was written:

- the prep kernel choice: ``--kernel "GROUP=KERNEL"`` per group (``GROUP=`` stages nothing);
- an approval: ``--approver NAME [--comment TEXT]``;
- a halt decision: ``--decision continue|abort --approver NAME --reason TEXT``.

A field left out takes the form's default, as in the UI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any
from uuid import UUID

import typer
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.input import RunInput
from prefect.utilities.schema_tools import validate as validate_against_schema
from pydantic import BaseModel, Field, ValidationError

from flows.cli.console import (
    CliError,
    UsageError,
    add_row,
    handles_expected_failures,
    prefect_api_url,
    safe,
    stderr,
    stdout,
    table,
)
from flows.common.pauses import Approval, HaltDecision

# Forms of ours whose model checks more than their schema can say (a blank approver...).
KNOWN_FORMS: dict[str, type[RunInput]] = {"Approval": Approval, "HaltDecision": HaltDecision}


class PauseForm(BaseModel):
    """What a paused run asks for: its form's schema and description."""

    flow_run_id: UUID
    run_name: str
    title: str = Field(description="the form's name: KernelChoice, Approval, HaltDecision...")
    schema_: dict[str, Any] | None = Field(description="None: the run waits without a form")
    description: str | None = None

    @property
    def fields(self) -> dict[str, dict[str, Any]]:
        return dict((self.schema_ or {}).get("properties", {}))

    @property
    def required(self) -> list[str]:
        return list((self.schema_ or {}).get("required", []))


class Answer(BaseModel):
    """The options of ``cloudops resume``, before they meet a form."""

    kernels: list[str] = Field(default_factory=list)
    decision: str | None = None
    approver: str | None = None
    reason: str | None = None
    comment: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.kernels) or any(
            v is not None for v in (self.decision, self.approver, self.reason, self.comment)
        )


def find_paused_run(client: SyncPrefectClient, ref: str) -> FlowRun:
    """The run ``ref`` names (a flow run id, or the name of a paused run), which must be
    paused."""
    try:
        run_id = UUID(ref.strip())
    except ValueError:
        run = _paused_run_named(client, ref.strip())
    else:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            raise CliError(f"there is no flow run {run_id} on {prefect_api_url()}") from None
    if run.state is None or not run.state.is_paused():
        state = run.state.name if run.state else "without a state"
        raise CliError(f"flow run {run.name} ({run.id}) is {state}, not paused: nothing to resume")
    return run


def _paused_run_named(client: SyncPrefectClient, name: str) -> FlowRun:
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])), limit=10
    )
    paused = [r for r in runs if r.state is not None and r.state.is_paused()]
    if len(paused) == 1:
        return paused[0]
    if not runs:
        raise CliError(f"there is no flow run named {name!r} on {prefect_api_url()}")
    if not paused:
        states = ", ".join(f"{r.id} {r.state.name if r.state else '?'}" for r in runs)
        raise CliError(f"no run named {name!r} is paused ({states}): nothing to resume")
    raise CliError(
        f"{len(paused)} paused runs are named {name!r}: "
        + ", ".join(str(r.id) for r in paused)
        + "; give the flow run id"
    )


def read_form(client: SyncPrefectClient, run: FlowRun) -> PauseForm:
    """The form the paused ``run`` waits on, as the server stored it."""
    assert run.state is not None
    keyset = run.state.state_details.run_input_keyset
    if not keyset:
        return PauseForm(flow_run_id=run.id, run_name=run.name, title="", schema_=None)
    try:
        schema = json.loads(client.read_flow_run_input(run.id, keyset["schema"]))
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
        raise CliError(
            f"flow run {run.name} waits for input but its form is not stored on the server "
            "(the run may still be saving it): try again in a moment"
        ) from None
    try:
        description = json.loads(client.read_flow_run_input(run.id, keyset["description"]))
    except PrefectHTTPStatusError:
        description = None  # a form need not describe itself
    return PauseForm(
        flow_run_id=run.id,
        run_name=run.name,
        title=str(schema.get("title", "")),
        schema_=schema,
        description=description if isinstance(description, str) else None,
    )


def build_answer(form: PauseForm, answer: Answer) -> dict[str, Any]:
    """The run input for ``form`` from the options: each option must be a field of the form;
    every other field takes the form's default, as the UI pre-fills it. Except a kernel group:
    in a terminal nobody sees the pre-filled kernel, so each group must be named (an empty
    kernel stages nothing on it)."""
    fields = form.fields
    values: dict[str, Any] = {}
    problems: list[str] = []
    for item in answer.kernels:
        group, sep, kernel = item.partition("=")
        group = group.strip()
        if not sep or not group:
            problems.append(f'--kernel {item!r}: write it as "GROUP=KERNEL"')
        elif group not in fields:
            problems.append(f"this run's form has no kernel group {group!r}")
        elif group in values:
            problems.append(f"--kernel names group {group!r} twice")
        else:
            # An empty kernel leaves the group unstaged, as emptying its field in the UI does.
            values[group] = kernel.strip() or None
    for name in ("decision", "approver", "reason", "comment"):
        value = getattr(answer, name)
        if value is None:
            continue
        if name not in fields:
            problems.append(f"this run's form has no field {name!r} (--{name})")
        else:
            values[name] = value
    if answer.kernels or form.title == KERNEL_FORM_TITLE:
        problems += [
            f'kernel group {name!r} is not named: pass --kernel "{name}=<kernel>" (one of '
            f'its options), or --kernel "{name}=" to stage nothing on it'
            for name in fields
            if name not in values and name not in _NON_KERNEL_FIELDS
        ]
    if problems:
        raise UsageError(_refusal(form, problems))
    for name, spec in fields.items():
        if name not in values and "default" in spec:
            values[name] = spec["default"]
    return values


# The title Prefect gives the prep flow's kernel choice form (its model's name), and the
# fields of the other forms that are no kernel group.
KERNEL_FORM_TITLE = "KernelChoice"
_NON_KERNEL_FIELDS = frozenset({"decision", "approver", "reason", "comment"})


def refusals(form: PauseForm, values: Mapping[str, Any]) -> list[str]:
    """Why the form would refuse ``values`` (empty: it accepts them)."""
    assert form.schema_ is not None
    problems = []
    for error in validate_against_schema(dict(values), form.schema_, raise_on_error=False):
        where = ".".join(str(p) for p in error.path) or "the answer"
        problems.append(f"{where}: {error.message}")
    model = KNOWN_FORMS.get(form.title)
    if not problems and model is not None:
        try:
            model.model_validate(dict(values))
        except ValidationError as exc:
            problems += [
                f"{'.'.join(str(p) for p in e['loc']) or 'the answer'}: {e['msg']}"
                for e in exc.errors()
            ]
    return problems


def _refusal(form: PauseForm, problems: list[str]) -> str:
    lines = [f"the form of flow run {form.run_name} refuses this answer:", *problems]
    lines.append(f"it asks for: {describe_fields(form)}")
    return "\n".join(lines)


def describe_fields(form: PauseForm) -> str:
    """The form's fields as a person reads them: name, options, required or default."""
    parts = []
    schema = form.schema_ or {}
    for name, spec in form.fields.items():
        options = _options(spec, schema)
        text = name
        if options:
            text += f" (one of: {', '.join(map(str, options))})"
        if name in form.required:
            text += ", required"
        elif "default" in spec:
            text += f", default {spec['default']!r}"
        parts.append(text)
    return "; ".join(parts) or "no field"


def _options(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Any]:
    """The enumerated values a field accepts, through ``anyOf`` and ``$ref``."""
    if "enum" in spec:
        return list(spec["enum"])
    if "$ref" in spec:
        name = str(spec["$ref"]).rsplit("/", 1)[-1]
        target = schema.get("definitions", {}).get(name) or schema.get("$defs", {}).get(name, {})
        return _options(target, schema)
    found: list[Any] = []
    for branch in spec.get("anyOf", []) + spec.get("allOf", []):
        found += _options(branch, schema)
    return found


def send(client: SyncPrefectClient, form: PauseForm, values: dict[str, Any] | None) -> None:
    """Resume the run with ``values``; a ``CliError`` says why the server refused."""
    result = client.resume_flow_run(form.flow_run_id, run_input=values)
    if result.status is SetStateStatus.ACCEPT:
        return
    reason = getattr(result.details, "reason", None) or result.status.value
    raise CliError(f"the server did not resume flow run {form.run_name}: {reason}")


@handles_expected_failures
def resume(
    run: Annotated[str, typer.Argument(help="The paused flow run: its id, or its name.")],
    kernel: Annotated[
        list[str] | None,
        typer.Option(
            "--kernel",
            "-k",
            help='A kernel group\'s choice, "GROUP=KERNEL" (repeat per group; "GROUP=" stages '
            "nothing on it).",
        ),
    ] = None,
    decision: Annotated[
        str | None, typer.Option(help="For a halted run: continue or abort.")
    ] = None,
    approver: Annotated[
        str | None, typer.Option(help="Who decides or approves, as the change record shows it.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (a halt decision).")] = None,
    comment: Annotated[str | None, typer.Option(help="A comment (an approval).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and show the answer; do not resume.")
    ] = False,
) -> None:
    """Resume a paused run with the same typed answer its form in the UI gives; a value the
    form would refuse is refused here, and the run keeps waiting."""
    prefect_api_url()
    answer = Answer(
        kernels=kernel or [],
        decision=decision,
        approver=approver,
        reason=reason,
        comment=comment,
    )
    with get_client(sync_client=True) as client:
        paused = find_paused_run(client, run)
        form = read_form(client, paused)
        values: dict[str, Any] | None = None
        if form.schema_ is None:
            if answer.given:
                raise UsageError(
                    f"flow run {form.run_name} waits without a form: resume it without options"
                )
        else:
            values = build_answer(form, answer)
            problems = refusals(form, values)
            if problems:
                raise UsageError(_refusal(form, problems))
            _show(form, values, answer)
        if dry_run:
            stderr().print(safe("dry run: the form accepts this answer; the run still waits"))
            return
        send(client, form, values)
    stdout().print(safe(f"resumed flow run {form.run_name} ({form.flow_run_id})"))


def _show(form: PauseForm, values: Mapping[str, Any], answer: Answer) -> None:
    given = {k.partition("=")[0].strip() for k in answer.kernels} | {
        name for name in ("decision", "approver", "reason", "comment") if getattr(answer, name)
    }
    grid = table(f"Answer to {form.title or 'the form'} of {form.run_name}", "field", "value", "")
    for name, value in values.items():
        add_row(
            grid, name, "(none)" if value is None else value, "" if name in given else "default"
        )
    stdout().print(grid)
