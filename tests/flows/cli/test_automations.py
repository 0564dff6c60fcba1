"""``cloudops automations render``: the repository's automations with the operator's
notification block filled in, as Prefect's own model accepts them; the file as committed is
refused, so an automation that cannot notify is never created by mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.schemas.automations import AutomationCore
from pydantic import ValidationError

from blocks import LocalProviderBlock
from tests.flows.cli.conftest import Cloudops

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

AUTOMATIONS = Path(__file__).resolve().parents[3] / "automations.yaml"


def committed() -> list[dict]:
    return yaml.safe_load(AUTOMATIONS.read_text())["automations"]


def test_the_committed_file_is_refused_until_a_block_is_named() -> None:
    for automation in committed():
        with pytest.raises(ValidationError, match="block_document_id"):
            AutomationCore.model_validate(automation)


def test_rendering_names_the_block_in_every_notification(cloudops: Cloudops, tmp_path) -> None:
    block = CustomWebhookNotificationBlock(
        name="ops", url="https://hooks.example.com/cloudops", json_data={"text": "{{body}}"}
    )
    block_id = block.save("cloudops-ops-test", overwrite=True)
    out = tmp_path / "automations.yaml"

    made = cloudops(
        "automations",
        "render",
        "--notify-block",
        "custom-webhook/cloudops-ops-test",
        "--file",
        str(AUTOMATIONS),
        "-o",
        str(out),
    )

    assert made.exit_code == 0, made.output
    assert f"prefect automation create --from-file {out}" in made.stderr
    rendered = yaml.safe_load(out.read_text())["automations"]
    automations = [AutomationCore.model_validate(a) for a in rendered]
    assert {a.name for a in automations} == {a["name"] for a in committed()}
    expected = {tuple(a.trigger.expect) for a in automations}  # type: ignore[union-attr]
    assert expected == {("cloudops.*.failed",), ("cloudops.window.halted",)}
    for automation in automations:
        [action] = automation.actions
        assert action.type == "send-notification"
        assert action.block_document_id == block_id  # type: ignore[union-attr]


def test_a_block_that_cannot_notify_or_does_not_exist_is_refused(cloudops: Cloudops) -> None:
    LocalProviderBlock().save("not-a-notifier", overwrite=True)
    try:
        wrong = cloudops(
            "automations",
            "render",
            "--notify-block",
            "local-provider/not-a-notifier",
            "--file",
            str(AUTOMATIONS),
        )
    finally:
        LocalProviderBlock.delete("not-a-notifier")
    missing = cloudops(
        "automations",
        "render",
        "--notify-block",
        "slack-webhook/nobody",
        "--file",
        str(AUTOMATIONS),
    )
    malformed = cloudops("automations", "render", "--notify-block", "oncall")

    assert wrong.exit_code == 2 and "cannot send notifications" in wrong.stderr
    assert missing.exit_code == 1 and "no slack-webhook block named 'nobody'" in missing.stderr
    assert malformed.exit_code == 2 and "<block type>/<name>" in malformed.stderr
