"""The operator's command line on a real deployment: ``cloudops doctor`` right after
``prefect deploy --all``, the weekly example deployed with its schedule off, and the automations
of ``automations.yaml`` created with ``prefect automation create --from-file`` and firing on a
failed QC (their notification really sent, to a webhook of this test)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.deploy.conftest import REPO_ROOT, PrefectStack, stop_process_group

CLOUDOPS = Path(sys.executable).parent / "cloudops"
CHANGE = "CHG0042AUT"
LOCALHOST = {"instance_id": "localhost", "account_id": "local", "region": "local"}
RUN_SECONDS = 300
NOTIFY_SECONDS = 90


def cloudops(stack: PrefectStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``cloudops <args>`` as an operator runs it, against the stack's server."""
    return subprocess.run(
        [str(CLOUDOPS), *args],
        cwd=REPO_ROOT,
        env={**stack.env, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_doctor_passes_on_a_fresh_deployment(prefect_stack: PrefectStack, tmp_path: Path) -> None:
    # A machine that has never run a flow: its own, empty data directory.
    checked = cloudops(prefect_stack, "doctor", CLOUDOPS_DATA_DIR=str(tmp_path / "data"))

    lines = checked.stdout.splitlines()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    print(checked.stdout)  # the session an operator sees (pytest -s shows it)
    assert f"PASS  Prefect API: {prefect_stack.api_url}" in lines[0]
    for name in ("block type aws-provider", "block type local-provider", "work pool cloudops"):
        assert any(line.startswith(f"PASS  {name}:") for line in lines), name
    deployed = len(yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"])
    assert f"PASS  deployments: {deployed} on pool cloudops" in lines
    # no AWS on a test machine: a warning per environment, not a failure
    assert any(line.startswith("WARN  credentials gov") for line in lines)
    assert lines[-1].endswith(" 0 failed")


def test_the_weekly_example_is_deployed_with_its_schedule_off(
    prefect_stack: PrefectStack,
) -> None:
    with prefect_stack.client() as client:
        (weekly,) = client.read_deployments(
            deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=["weekly-host-facts"])
            )
        )
    (schedule,) = weekly.schedules
    assert schedule.schedule.cron == "0 7 * * 1"
    assert schedule.active is False


@dataclass
class Webhook:
    """An HTTP endpoint on this machine that keeps every request body it receives."""

    url: str
    bodies: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [body for body in self.bodies if text in body]
            if found:
                return found[0]
            time.sleep(1)
        raise AssertionError(f"no notification with {text!r}; received: {self.bodies}")


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            hook.bodies.append(self.rfile.read(length).decode())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    # Port 0: the kernel picks a free port as it binds, so no other test process can take it
    # between a look-up and the bind.
    server = HTTPServer(("127.0.0.1", 0), Handler)
    hook = Webhook(url=f"http://127.0.0.1:{server.server_address[1]}/notify")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()


def create_automations(stack: PrefectStack, block_slug: str, tmp_path: Path) -> list[str]:
    """The repository's automations, rendered for ``block_slug`` and created with Prefect's
    CLI; returns their names."""
    rendered = tmp_path / "automations.yaml"
    made = cloudops(
        stack, "automations", "render", "--notify-block", block_slug, "-o", str(rendered)
    )
    assert made.returncode == 0, made.stdout + made.stderr
    stack.cli("automation", "create", "--from-file", str(rendered))
    return [a["name"] for a in yaml.safe_load(rendered.read_text())["automations"]]


def test_the_automations_notify_on_a_failed_qc(
    prefect_stack: PrefectStack, webhook: Webhook, tmp_path: Path
) -> None:
    with temporary_settings(updates={PREFECT_API_URL: prefect_stack.api_url}):
        CustomWebhookNotificationBlock(
            name="cloudops e2e",
            url=webhook.url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            allow_private_urls=True,  # the webhook of this test listens on loopback
        ).save("cloudops-e2e", overwrite=True)
    names = create_automations(prefect_stack, "custom-webhook/cloudops-e2e", tmp_path)
    with prefect_stack.client() as client:
        automations = [a for name in names for a in client.read_automations_by_name(name)]
    assert len(automations) == 2
    worker = prefect_stack.start_worker("automations-worker", limit=1)
    try:
        run_id = prefect_stack.trigger(
            "linux-qc-patching-prep/on-demand",
            change_number=CHANGE,
            provider="local",
            instances=[LOCALHOST],
            workdir=str(tmp_path / "servers"),
            choose_in_ui=False,
        )
        run = prefect_stack.wait_for_flow_run(run_id, RUN_SECONDS)
        # QC fails on this machine (no CrowdStrike): the run completes and emits the event.
        assert run.state is not None and run.state.is_completed(), prefect_stack.log_tail()

        body = json.loads(webhook.wait_for(f"on change {CHANGE}", NOTIFY_SECONDS))
        assert body["subject"] == f"CloudOps: cloudops.qc.failed on change {CHANGE}"
        assert "1 failed" in body["body"] and f"cloudops history {CHANGE}" in body["body"]
        assert run.name in body["body"]
        failures = next(a for a in automations if a.name.endswith("found failures"))
        executed = _events(prefect_stack, "prefect.automation.action.executed", failures.id)
        assert executed, "the automation's action is not in the event feed"
    finally:
        stop_process_group(worker)
        prefect_stack.processes.remove(worker)
        with prefect_stack.client() as client:  # other tests must not notify a closed webhook
            for automation in automations:
                client.delete_automation(automation.id)


def _events(stack: PrefectStack, name: str, automation_id: object) -> list[object]:
    event_filter = EventFilter(
        event=EventNameFilter(name=[name]),
        resource=EventResourceFilter(id=[f"prefect.automation.{automation_id}"]),
    )
    deadline = time.monotonic() + 30
    while True:
        with stack.client() as client:
            found = client.read_events(event_filter, limit=10).events
        if found or time.monotonic() > deadline:
            return list(found)
        time.sleep(1)
