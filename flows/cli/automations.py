"""``cloudops automations render``: the automations of ``automations.yaml`` with the operator's
notification block filled in, ready for ``prefect automation create --from-file``.

Prefect stores a notification action by the id of its block, which differs on every server, so
the file in the repository names a placeholder; this command looks the operator's block up by
its slug (``slack-webhook/ops-oncall``), checks that it can notify, puts its id in every
``send-notification`` action, and checks each automation against Prefect's own model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
import yaml
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import ObjectNotFound
from pydantic import ValidationError

from flows.cli.console import (
    CliError,
    UsageError,
    handles_expected_failures,
    prefect_api_url,
    safe,
    stderr,
)

PLACEHOLDER = "REPLACE-WITH-NOTIFICATION-BLOCK-ID"
DEFAULT_FILE = Path("automations.yaml")

app = typer.Typer(
    help="Automations as code: fill in the notification block of automations.yaml.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def load_automations(path: Path) -> list[dict[str, Any]]:
    """The automations of the file at ``path`` (a list under ``automations:``)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(
            f"cannot read {path}: {exc.strerror or exc}; run from the checkout, or pass --file"
        ) from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from None
    automations = data.get("automations") if isinstance(data, dict) else None
    if not isinstance(automations, list) or not all(isinstance(a, dict) for a in automations):
        raise CliError(f"{path} holds no list of automations under 'automations:'")
    return automations


def fill_in_block(automations: list[dict[str, Any]], block_id: UUID) -> list[dict[str, Any]]:
    """The automations with ``block_id`` in every notification action, each checked against
    Prefect's ``AutomationCore``."""
    filled = []
    problems = []
    for automation in automations:
        copy = {**automation}
        copy["actions"] = [
            (
                {**action, "block_document_id": str(block_id)}
                if action.get("block_document_id") == PLACEHOLDER
                else action
            )
            for action in automation.get("actions", [])
        ]
        try:
            AutomationCore.model_validate(copy)
        except ValidationError as exc:
            problems.append(f"{automation.get('name', '(no name)')}: {exc}")
        filled.append(copy)
    if problems:
        raise CliError("Prefect would refuse these automations:\n" + "\n".join(problems))
    return filled


def notification_block_id(slug: str) -> UUID:
    """The id of the notification block ``slug`` (``<block type>/<name>``) on the server."""
    type_slug, sep, name = slug.partition("/")
    if not sep or not type_slug or not name:
        raise UsageError(
            f"{slug!r} is not a block slug: write <block type>/<name>, e.g. "
            "slack-webhook/ops-oncall (`prefect block ls` lists them)"
        )
    prefect_api_url()
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, type_slug, include_secrets=False)
        except ObjectNotFound:
            raise CliError(
                f"there is no {type_slug} block named {name!r} on {prefect_api_url()}; create "
                "it in the UI (Blocks → +) or with Python, then run this again"
            ) from None
    capabilities = document.block_schema.capabilities if document.block_schema else []
    if "notify" not in capabilities:
        raise UsageError(
            f"block {slug} cannot send notifications (its capabilities: "
            f"{', '.join(capabilities) or 'none'}); name a notification block such as "
            "slack-webhook/..., ms-teams-webhook/..., custom-webhook/..."
        )
    return document.id


@app.command("render")
@handles_expected_failures
def render(
    notify_block: Annotated[
        str,
        typer.Option(
            "--notify-block",
            help="The notification block to notify through, as <block type>/<name>.",
        ),
    ],
    file: Annotated[
        Path, typer.Option("--file", help="The automations file of the repository.")
    ] = DEFAULT_FILE,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (default: stdout)."),
    ] = None,
) -> None:
    """Write the automations with the notification block's id filled in, for
    `prefect automation create --from-file`."""
    automations = load_automations(file)
    filled = fill_in_block(automations, notification_block_id(notify_block))
    text = yaml.safe_dump({"automations": filled}, sort_keys=False, allow_unicode=True)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    stderr().print(
        safe(
            f"wrote {len(filled)} automation(s) notifying through {notify_block} to {output}; "
            f"next: prefect automation create --from-file {output}"
        )
    )
