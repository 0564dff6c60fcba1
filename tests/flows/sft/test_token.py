"""sft-fixer and the enrollment token: which Secret it may read, where the instances read the
token, and that what the flow put there for a run is gone afterwards, also when the run failed.

Runs on the SSM emulator: each instance's fake ``aws`` reads Parameter Store (moto) as its
instance profile, and the world records who read what.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.ssm.models import ssm_backends
from prefect.blocks.system import Secret
from pydantic import SecretStr

from blocks import AwsProviderBlock
from flows import sft_fixer
from flows.sft.parameters import SftAction, SftFixerInputError
from flows.sft.result import SftVerdict
from flows.store import Store
from providers.local import LocalProvider
from tests.flows.scripts.test_sft_scripts import COMMON_TOOLS, FAKES, FAMILY_TOOLS, OS_RELEASE
from tests.flows.sft.hosts import ACCOUNT, QUICK, REGION, TOKEN, SftHost, host, sent_scripts
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

MEMBER = "222222222222"
MEMBER_REGION = "us-west-2"


def run_parameter(state_flow_run_id: object) -> str:
    return f"/cloudops-flows/sft-enrollment-token/{state_flow_run_id}"


@pytest.fixture
def secret_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the Secret blocks the flow loads, in order."""
    loaded: list[str] = []
    load = Secret.load.__func__  # type: ignore[attr-defined]

    def recording_load(cls: type[Secret], name: str, *args: object, **kwargs: object) -> object:
        loaded.append(name)
        return load(cls, name, *args, **kwargs)

    monkeypatch.setattr(Secret, "load", classmethod(recording_load))
    return loaded


def test_a_secret_block_not_designated_for_the_token_is_refused_unread(
    ssm_world: SsmWorld, provider_slug: str, secret_loads: list[str]
) -> None:
    stopped = host(ssm_world, "stopped")
    deploy_token = "ghp_" + "D" * 36  # an unrelated 40-character deploy token
    Secret(value=deploy_token).save("deploy-token", overwrite=True)
    try:
        with pytest.raises(SftFixerInputError) as refused:
            sft_fixer(
                instances=[stopped.target],
                action="reset",
                provider=provider_slug,
                token_block="deploy-token",
                **QUICK,
            )
    finally:
        Secret.delete("deploy-token")

    message = str(refused.value)
    assert "'deploy-token' is not designated" in message and "CLOUDOPS_SFT_TOKEN_BLOCKS" in message
    assert deploy_token not in message
    assert "deploy-token" not in secret_loads
    assert ssm_world.calls[("ssm", "SendCommand")] == 0
    assert stopped.changing_calls() == []


def test_the_token_is_put_in_each_account_and_region_that_needs_it_and_removed_after(
    ssm_world: SsmWorld, provider_slug: str, token_block: str
) -> None:
    ssm_world.add_role(MEMBER)
    here = host(ssm_world, "stopped")
    there = SftHost(
        ssm_world.add_instance(account_id=MEMBER, region=MEMBER_REGION, name="sft-member")
    ).bring_to("missing")
    healthy = host(ssm_world, "healthy")

    state = sft_fixer(
        instances=[here.target, there.target, healthy.target],
        provider=provider_slug,
        token_block=token_block,
        action="auto",
        return_state=True,
        **QUICK,
    )

    verdicts = {o.instance_id: o.verdict for o in state.result().outcomes}
    assert verdicts == {
        here.id: SftVerdict.FIXED,
        there.id: SftVerdict.FIXED,
        healthy.id: SftVerdict.ALREADY_HEALTHY,
    }
    parameter = run_parameter(state.state_details.flow_run_id)
    reads = {(r.instance_id, r.account_id, r.region, r.name) for r in ssm_world.secret_reads}
    assert reads == {
        (here.id, ACCOUNT, REGION, parameter),
        (there.id, MEMBER, MEMBER_REGION, parameter),
    }
    made = [r for r in ssm_world.requests if r.operation == "PutParameter"]
    assert sorted((r.account, r.region) for r in made) == [
        (ACCOUNT, REGION),
        (MEMBER, MEMBER_REGION),
    ]
    for account, region in ((ACCOUNT, REGION), (MEMBER, MEMBER_REGION)):
        assert ssm_backends[account][region].get_parameter(parameter) is None
    assert ssm_world.calls[("ssm", "DeleteParameter")] == 2


class _DiskFullAtReset(Store):
    """A store whose disk fills up when the reset's results are to be recorded."""

    def start_run(self, flow_run_id, workflow, step, provider, change_number):  # type: ignore[no-untyped-def]
        if step == "reset":
            raise OSError("No space left on device")
        return super().start_run(flow_run_id, workflow, step, provider, change_number)


def test_the_token_is_removed_even_when_the_run_fails_while_it_is_out(
    ssm_world: SsmWorld,
    provider_slug: str,
    token_block: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped = host(ssm_world, "stopped")
    # The store's disk fills up while the reset's results are recorded.
    monkeypatch.setattr(Store, "default", classmethod(lambda cls: _DiskFullAtReset()))

    state = sft_fixer(
        instances=[stopped.target],
        action="reset",
        provider=provider_slug,
        token_block=token_block,
        return_state=True,
        **QUICK,
    )

    assert state.is_failed() and "No space left on device" in str(state.message)
    parameter = run_parameter(state.state_details.flow_run_id)
    assert [r.name for r in ssm_world.secret_reads] == [parameter]  # it was out, and read
    assert ssm_backends[ACCOUNT][REGION].get_parameter(parameter) is None
    assert ssm_world.calls[("ssm", "DeleteParameter")] == 1


def test_a_token_the_operator_keeps_in_parameter_store_is_read_by_the_instances_only(
    ssm_world: SsmWorld,
    provider_slug: str,
    monkeypatch: pytest.MonkeyPatch,
    secret_loads: list[str],
) -> None:
    keys = ssm_world.credentials(ACCOUNT, user_name="operator")
    boto3.client(
        "ssm",
        region_name=REGION,
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
    ).put_parameter(Name="/ops/sft/enrollment-token", Value=TOKEN, Type="SecureString")
    monkeypatch.setenv("CLOUDOPS_SFT_TOKEN_PARAMETER", "/ops/sft/enrollment-token")
    stopped = host(ssm_world, "stopped")
    made_before = ssm_world.calls[("ssm", "PutParameter")]

    result = sft_fixer(instances=[stopped.target], action="reset", provider=provider_slug, **QUICK)

    assert [o.verdict for o in result.outcomes] == [SftVerdict.FIXED]
    assert [(r.instance_id, r.name, r.answer) for r in ssm_world.secret_reads] == [
        (stopped.id, "/ops/sft/enrollment-token", "value")
    ]
    # The flow neither read it nor made or removed anything: the parameter is the operator's.
    assert secret_loads == []
    assert ssm_world.calls[("ssm", "PutParameter")] == made_before
    assert ssm_world.calls[("ssm", "DeleteParameter")] == 0
    assert ssm_backends[ACCOUNT][REGION].get_parameter("/ops/sft/enrollment-token") is not None


def test_an_instance_that_may_not_read_the_token_fails_with_the_reason_and_is_unchanged(
    ssm_world: SsmWorld, provider_slug: str, token_block: str
) -> None:
    stopped = host(ssm_world, "stopped", FAKE_SFTD_ENROLLS="0")
    ssm_world.deny_secret_reads(stopped.id)
    before = stopped.files()

    result = sft_fixer(
        instances=[stopped.target],
        action="reset",
        provider=provider_slug,
        token_block=token_block,
        verify_attempts=1,
        **QUICK,
    )

    [outcome] = result.outcomes
    assert outcome.verdict is SftVerdict.FAILED
    assert "token_unreadable" in outcome.reason and "ssm:GetParameter" in outcome.reason
    assert [r.answer for r in ssm_world.secret_reads] == ["AccessDeniedException"]
    assert stopped.changing_calls() == [] and stopped.files() == before
    assert sent_scripts(ssm_world, stopped.id) == ["sft_detect", "sft_reset", "sft_detect"]


def test_a_provider_whose_scripts_cannot_read_a_kept_token_is_refused_before_sending(
    ssm_world: SsmWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDOPS_SFT_TOKEN_PARAMETER", "/ops/sft/enrollment-token")

    with pytest.raises(SftFixerInputError, match="local provider's scripts cannot read"):
        sft_fixer(instances=[LocalProvider.TARGET], action="reset", provider="local", **QUICK)


@pytest.fixture
def this_machine_as_a_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Path]]:
    """This worker made a RHEL host for the local provider: the SFT fakes first on its PATH, a
    sandbox as its root. Yields (the root, where the flow's secret files go)."""
    root, tools, temp = tmp_path / "root", tmp_path / "bin", tmp_path / "tmp"
    for directory in (root / "etc", tools, temp):
        directory.mkdir(parents=True)
    (root / "etc" / "os-release").write_text(OS_RELEASE["rhel"])
    for tool in {*COMMON_TOOLS, *FAMILY_TOOLS["rpm"], "dpkg-query"}:
        (tools / tool).symlink_to(FAKES / tool)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CLOUDOPS_ROOT", str(root))
    monkeypatch.setenv("FAKE_CALLS_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield root, temp
    shutil.rmtree(root, ignore_errors=True)


def test_with_the_local_provider_the_token_is_a_private_file_for_the_run_only(
    this_machine_as_a_host: tuple[Path, Path], token_block: str
) -> None:
    root, temp = this_machine_as_a_host

    result = sft_fixer(
        instances=[LocalProvider.TARGET],
        action=SftAction.INSTALL,
        provider="local",
        token_block=token_block,
        **QUICK,
    )

    [outcome] = result.outcomes
    assert outcome.verdict is SftVerdict.FIXED, outcome.reason
    assert (root / "var/log/fake-sftd.log").read_text().count("enrolled") == 1
    assert list(temp.glob("cloudops-secret-*")) == []  # the file and its directory are gone
    assert [p for p in temp.rglob("*") if p.is_file() and TOKEN in p.read_text()] == []


def test_the_aws_block_names_the_kms_key_of_the_run_parameter(
    ssm_world: SsmWorld, token_block: str
) -> None:
    keys = ssm_world.credentials(ACCOUNT)
    AwsProviderBlock(
        access_key_id=SecretStr(keys.access_key_id),
        secret_access_key=SecretStr(keys.secret_access_key),
        secret_kms_key_id="alias/cloudops-secrets",
        poll_initial_seconds=0.05,
        poll_max_seconds=0.2,
    ).save("sft-kms", overwrite=True)
    stopped = host(ssm_world, "stopped")
    kept: list[str | None] = []

    def note_the_key(command: object) -> None:
        # While the reset is being sent, the run's parameter exists: see how it is encrypted.
        parameters = ssm_backends[ACCOUNT][REGION]._parameters
        kept.extend(
            versions[-1].keyid
            for name, versions in list(parameters.items())
            if name.startswith("/cloudops-flows/")
        )

    ssm_world.on_accepted(note_the_key)
    try:
        result = sft_fixer(
            instances=[stopped.target],
            action="reset",
            provider="aws-provider/sft-kms",
            token_block=token_block,
            **QUICK,
        )
    finally:
        AwsProviderBlock.delete("sft-kms")

    assert [o.verdict for o in result.outcomes] == [SftVerdict.FIXED]
    assert "alias/cloudops-secrets" in kept
