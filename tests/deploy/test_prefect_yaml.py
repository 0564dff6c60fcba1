"""``prefect.yaml`` holds together: every entrypoint imports to a flow, every parameter default
fits that flow's signature and passes Prefect's own validation, every deployment explains
itself in the UI, and the daily credential check is scheduled."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.callables import parameter_schema
from pydantic import BaseModel

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
EVERY_FLOW = {
    "validate-credentials",
    "run-script",
    "linux-qc-patching-prep",
    "linux-qc-patching-post",
    "linux-qc-patching-window",
    "sft-fixer",
}
# Parameters a deployment cannot default, since every run names its own; the test supplies one
# so that Prefect validates the rest of the call.
GIVEN_AT_RUN_TIME: dict[str, dict[str, Any]] = {
    "linux-qc-patching-post": {"change_number": "CHG0012345"},
    "linux-qc-patching-window": {"change_number": "CHG0012345"},
    "sft-fixer": {"instances": "CHG0012345"},
}


def load_deployments() -> list[dict[str, Any]]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


def load_flow(entrypoint: str) -> Flow[..., Any]:
    module_name, _, function_name = entrypoint.partition(":")
    flow = getattr(importlib.import_module(module_name), function_name)
    assert isinstance(flow, Flow), f"{entrypoint} is not a Prefect flow"
    return flow


DEPLOYMENTS = load_deployments()
BY_ID = {f"{d['entrypoint']}/{d['name']}": d for d in DEPLOYMENTS}


def test_every_flow_is_deployed_once() -> None:
    names = [(load_flow(d["entrypoint"]).name, d["name"]) for d in DEPLOYMENTS]
    assert len(names) == len(set(names))
    assert {flow for flow, _ in names} == EVERY_FLOW


@pytest.mark.parametrize("key", sorted(BY_ID))
def test_parameter_defaults_fit_the_flow(key: str) -> None:
    deployment = BY_ID[key]
    flow = load_flow(deployment["entrypoint"])
    params = deployment.get("parameters") or {}
    # A name the flow does not take, or a value of the wrong type, fails here, not at run time.
    inspect.signature(flow.fn).bind_partial(**params)
    validated = flow.validate_parameters({**GIVEN_AT_RUN_TIME.get(flow.name, {}), **params})
    for name, value in params.items():
        kept = validated[name]
        # A model parameter (discovery) is kept when the YAML reads as that same model.
        expected = type(kept).model_validate(value) if isinstance(kept, BaseModel) else value
        assert kept == expected, f"{name}: {value!r} became {kept!r}"


@pytest.mark.parametrize("key", sorted(BY_ID))
def test_deployment_explains_itself_and_runs_on_the_cloudops_pool(key: str) -> None:
    deployment = BY_ID[key]
    assert len(deployment["description"].split()) >= 20, "a description an operator can use"
    assert "cloudops" in deployment["tags"]
    assert deployment["work_pool"]["name"] == "cloudops"


@pytest.mark.parametrize("key", sorted(BY_ID))
def test_every_parameter_renders_as_a_typed_documented_ui_field(key: str) -> None:
    flow = load_flow(BY_ID[key]["entrypoint"])
    properties = parameter_schema(flow).model_dump()["properties"]
    for name, schema in properties.items():
        assert {"type", "anyOf", "allOf", "$ref"} & set(schema), f"{name} has no type"
        assert schema.get("description"), f"{name} has no description (Args: in the docstring)"


def test_credentials_are_checked_daily_at_a_utc_time() -> None:
    (daily,) = [d for d in DEPLOYMENTS if load_flow(d["entrypoint"]).name == "validate-credentials"]
    (schedule,) = daily["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert cron.timezone == "UTC"
    assert cron.cron.split()[2:] == ["*", "*", "*"], "every day"
    assert schedule.get("active", True)


def test_on_demand_deployments_have_no_schedule() -> None:
    for deployment in DEPLOYMENTS:
        if deployment["name"] == "on-demand":
            assert not deployment.get("schedules"), deployment["entrypoint"]


def test_the_weekly_run_script_example_is_scheduled_but_off() -> None:
    (weekly,) = [d for d in DEPLOYMENTS if d["name"] == "weekly-host-facts"]
    assert load_flow(weekly["entrypoint"]).name == "run-script"
    (schedule,) = weekly["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert cron.cron.split()[2:] == ["*", "*", "1"], "every Monday"
    assert schedule["active"] is False, "an example runs only once someone turns it on"
    assert weekly["parameters"]["discovery"]["tags"], "it never runs on every server by default"


def test_the_patch_window_waits_for_a_person_before_it_installs() -> None:
    (window,) = [
        d for d in DEPLOYMENTS if load_flow(d["entrypoint"]).name == "linux-qc-patching-window"
    ]
    assert window["name"] == "on-demand"
    assert window["parameters"]["require_approval"] is True
    assert window["parameters"]["on_halt"] == "pause"


def test_flow_runs_start_in_the_checkout_named_by_the_worker() -> None:
    # Resolved on the worker at run time, so each machine may keep its checkout elsewhere.
    (step,) = yaml.safe_load(PREFECT_YAML.read_text())["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {
            "directory": "{{ $CLOUDOPS_FLOWS_DIR }}"
        }
    }
