"""The SSM emulator, driven with raw boto3 as any SSM client would drive AWS."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.ssm_emulator import SsmWorld

SHELL = "AWS-RunShellScript"
ACCOUNT_B = "222222222222"
GOV_ACCOUNT = "333333333333"


def ssm_client(region: str = "us-east-1", **kwargs: Any) -> Any:
    return boto3.client("ssm", region_name=region, **kwargs)


def send(ssm: Any, instance_ids: list[str], script: str, **kwargs: Any) -> str:
    parameters = {"commands": [script], **kwargs.pop("parameters", {})}
    response = ssm.send_command(
        InstanceIds=instance_ids,
        DocumentName=kwargs.pop("document", SHELL),
        Parameters=parameters,
        **kwargs,
    )
    return response["Command"]["CommandId"]


def wait_invocation(ssm: Any, command_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll ListCommandInvocations until its single invocation is terminal."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = ssm.list_command_invocations(CommandId=command_id, Details=True)
        invocations = found["CommandInvocations"]
        if invocations and invocations[0]["Status"] in (
            "Success",
            "Failed",
            "TimedOut",
            "Cancelled",
        ):
            return invocations[0]
        time.sleep(0.05)
    raise AssertionError(f"command {command_id} did not finish in {timeout} s")


def process_alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a reaper (PID 1 of a container may never reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_invocation_goes_pending_then_in_progress_then_success(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm_world.command_delay(pending=0.3, in_progress_min=0.3)
    ssm = ssm_client()
    command_id = send(ssm, [instance.instance_id], "echo done")

    seen: list[str] = []
    deadline = time.time() + 10
    while time.time() < deadline and (not seen or seen[-1] != "Success"):
        invocations = ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"]
        status = invocations[0]["Status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.03)

    assert seen == ["Pending", "InProgress", "Success"]


def test_script_runs_for_real_in_the_instance_sandbox(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance(name="web-1")
    instance.fake_command("uname", 'echo "5.14.0-427.el9.x86_64"')
    instance.write_file("/etc/os-release", 'ID="rhel"\n')
    ssm = ssm_client()
    script = (
        'uname\n. "$CLOUDOPS_ROOT/etc/os-release"; echo "id=$ID home=$HOME"\n'
        'echo "on $AWS_SSM_INSTANCE_ID" >&2\ntouch "$CLOUDOPS_ROOT/ran"\nexit 0'
    )
    command_id = send(ssm, [instance.instance_id], script)
    wait_invocation(ssm, command_id)

    got = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance.instance_id)
    assert got["Status"] == "Success" and got["ResponseCode"] == 0
    assert got["StandardOutputContent"] == (
        f"5.14.0-427.el9.x86_64\nid=rhel home={instance.home}\n"
    )
    assert got["StandardErrorContent"] == f"on {instance.instance_id}\n"
    assert (instance.sandbox / "ran").exists()


def test_non_zero_exit_is_failed_with_its_response_code(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm = ssm_client()
    invocation = wait_invocation(ssm, send(ssm, [instance.instance_id], "echo bad >&2; exit 3"))

    plugin = invocation["CommandPlugins"][0]
    assert (invocation["Status"], invocation["StatusDetails"]) == ("Failed", "Failed")
    assert plugin["ResponseCode"] == 3
    assert plugin["Name"] == "aws:runShellScript"
    assert plugin["Output"] == "\n----------ERROR-------\nbad\n"


def test_execution_timeout_kills_the_whole_process_group(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm = ssm_client()
    script = 'sleep 60 & echo $! > "$CLOUDOPS_ROOT/child"; echo $$ > "$CLOUDOPS_ROOT/pid"; wait'
    command_id = send(ssm, [instance.instance_id], script, parameters={"executionTimeout": ["1"]})

    invocation = wait_invocation(ssm, command_id)

    assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    assert invocation["CommandPlugins"][0]["ResponseCode"] == -1
    for name in ("pid", "child"):
        assert not process_alive(int((instance.sandbox / name).read_text()))


def test_plugin_output_is_stdout_then_stderr_cut_to_2500(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm = ssm_client()
    script = "printf 'o%.0s' $(seq 2000); printf 'e%.0s' $(seq 1000) >&2"
    invocation = wait_invocation(ssm, send(ssm, [instance.instance_id], script))

    output = invocation["CommandPlugins"][0]["Output"]
    separator = "\n----------ERROR-------\n"
    assert len(output) == 2500
    assert output == ("o" * 2000 + separator + "e" * 1000)[:2500]


def test_get_command_invocation_caps_stdout_and_stderr(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm = ssm_client()
    script = "head -c 30000 /dev/zero | tr '\\0' o; head -c 9000 /dev/zero | tr '\\0' e >&2"
    command_id = send(ssm, [instance.instance_id], script)
    wait_invocation(ssm, command_id)

    got = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance.instance_id)
    assert got["StandardOutputContent"] == "o" * 24000
    assert got["StandardErrorContent"] == "e" * 8000


def test_full_output_goes_to_s3_at_the_ssm_key_layout(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="ssm-output")
    ssm = ssm_client()
    script = "head -c 30000 /dev/zero | tr '\\0' o; echo oops >&2"
    command_id = send(
        ssm,
        [instance.instance_id],
        script,
        OutputS3BucketName="ssm-output",
        OutputS3KeyPrefix="runs/chg1",
    )
    invocation = wait_invocation(ssm, command_id)

    key = f"runs/chg1/{command_id}/{instance.instance_id}/awsrunShellScript/0.awsrunShellScript"
    stdout = s3.get_object(Bucket="ssm-output", Key=f"{key}/stdout")["Body"].read().decode()
    stderr = s3.get_object(Bucket="ssm-output", Key=f"{key}/stderr")["Body"].read().decode()
    assert stdout == "o" * 30000
    assert stderr == "oops\n"
    assert invocation["StandardOutputUrl"].endswith(f"/ssm-output/{key}/stdout")
    assert invocation["CommandPlugins"][0]["OutputS3KeyPrefix"] == "runs/chg1"


def test_more_than_50_instance_ids_are_refused(ssm_world: SsmWorld) -> None:
    ids = [i.instance_id for i in ssm_world.add_instances(51)]
    ssm = ssm_client()

    with pytest.raises(ClientError) as refused:
        send(ssm, ids, "true")

    assert error_code(refused) == "ValidationException"
    assert send(ssm, ids[:50], "true")
    assert ssm_world.send_commands_per_instance[ids[50]] == 0


def test_unknown_or_unmanaged_instance_fails_the_whole_call(ssm_world: SsmWorld) -> None:
    good = ssm_world.add_instance()
    unmanaged = ssm_world.add_instance(managed=False)
    ssm = ssm_client()

    for bad in ("i-0123456789abcdef0", unmanaged.instance_id):
        with pytest.raises(ClientError) as refused:
            send(ssm, [good.instance_id, bad], "true")
        assert error_code(refused) == "InvalidInstanceId"
        assert bad in refused.value.response["Error"]["Message"]
    assert ssm_world.commands == []


def test_offline_instance_is_connection_lost_and_its_command_times_out(
    ssm_world: SsmWorld,
) -> None:
    online = ssm_world.add_instance()
    offline = ssm_world.add_instance()
    ssm_world.set_offline(offline.instance_id)
    ssm_world.command_delay(pending=0.05, delivery_timeout=0.5)
    ssm = ssm_client()

    info = ssm.describe_instance_information()["InstanceInformationList"]
    pings = {i["InstanceId"]: i["PingStatus"] for i in info}
    assert pings == {online.instance_id: "Online", offline.instance_id: "ConnectionLost"}

    command_id = send(ssm, [offline.instance_id], 'touch "$CLOUDOPS_ROOT/ran"')
    invocation = wait_invocation(ssm, command_id)
    assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert not (offline.sandbox / "ran").exists()


def test_instance_lost_mid_run(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm_world.set_offline(instance.instance_id, mid_run=True, after=0.5, outcome="Undeliverable")
    ssm = ssm_client()
    command_id = send(ssm, [instance.instance_id], "sleep 30")

    time.sleep(0.25)
    running = ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"][0]
    assert running["Status"] == "InProgress"
    invocation = wait_invocation(ssm, command_id)
    assert (invocation["Status"], invocation["StatusDetails"]) == ("Failed", "Undeliverable")
    info = ssm.describe_instance_information()["InstanceInformationList"][0]
    assert info["PingStatus"] == "ConnectionLost"


def test_describe_instance_information_pages_and_filters(ssm_world: SsmWorld) -> None:
    instances = ssm_world.add_instances(12)
    ssm_world.add_instance(managed=False)
    ssm_world.add_instance(region="us-west-2")
    ssm_world.set_offline(instances[0].instance_id)
    ssm = ssm_client()

    pages = list(
        ssm.get_paginator("describe_instance_information").paginate(
            PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(p["InstanceInformationList"]) for p in pages] == [5, 5, 2]
    listed = {i["InstanceId"] for p in pages for i in p["InstanceInformationList"]}
    assert listed == {i.instance_id for i in instances}

    wanted = [instances[0].instance_id, instances[1].instance_id, "i-0000000000000dead"]
    filtered = ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": wanted}]
    )["InstanceInformationList"]
    assert {i["InstanceId"] for i in filtered} == set(wanted[:2])
    lost = ssm.describe_instance_information(
        Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}]
    )["InstanceInformationList"]
    assert [i["InstanceId"] for i in lost] == [instances[0].instance_id]


def test_list_command_invocations_pages_by_50(ssm_world: SsmWorld) -> None:
    ids = [i.instance_id for i in ssm_world.add_instances(50)]
    ssm_world.simulate(lambda instance, script: (instance.instance_id, "", 0))
    ssm = ssm_client()
    command_id = send(ssm, ids, "true")

    first = ssm.list_command_invocations(CommandId=command_id, MaxResults=30)
    second = ssm.list_command_invocations(
        CommandId=command_id, MaxResults=30, NextToken=first["NextToken"]
    )
    assert len(first["CommandInvocations"]) == 30
    assert "NextToken" not in second
    listed = [i["InstanceId"] for i in first["CommandInvocations"] + second["CommandInvocations"]]
    assert listed == ids
    with pytest.raises(ClientError) as too_many:
        ssm.list_command_invocations(CommandId=command_id, MaxResults=51)
    assert error_code(too_many) == "ValidationException"


def test_throttled_calls_are_retried_by_botocore(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    retries = Config(retries={"mode": "standard", "max_attempts": 10})
    ssm = ssm_client(config=retries)
    sts = boto3.client("sts", region_name="us-east-1", config=retries)
    command_id = send(ssm, [instance.instance_id], "true")
    ssm_world.throttle(share=0.3, services=("ssm", "sts"), seed=3)

    for _ in range(5):
        ssm.describe_instance_information()
        sts.get_caller_identity()
    assert wait_invocation(ssm, command_id)["Status"] == "Success"

    throttled, calls = ssm_world.throttled, ssm_world.calls
    for call in (("ssm", "DescribeInstanceInformation"), ("sts", "GetCallerIdentity")):
        assert throttled[call] > 0
        assert calls[call] == 5 + throttled[call]
    assert ssm_world.send_commands_per_instance[instance.instance_id] == 1


def test_an_injected_error_hits_the_named_call_only(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm = ssm_client()
    command_id = send(ssm, [instance.instance_id], "true")
    ssm_world.fail_next("ListCommandInvocations", code="ExpiredTokenException", after=1)

    ssm.list_command_invocations(CommandId=command_id)
    with pytest.raises(ClientError) as expired:
        ssm.list_command_invocations(CommandId=command_id)
    assert error_code(expired) == "ExpiredTokenException"
    ssm.list_command_invocations(CommandId=command_id)
    assert ssm_world.faults.pending_injections() == 0


def test_reads_lag_behind_send(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm_world.invocation_lag(0.5)
    ssm = ssm_client()
    command_id = send(ssm, [instance.instance_id], "echo hi")

    with pytest.raises(ClientError) as missing:
        ssm.get_command_invocation(CommandId=command_id, InstanceId=instance.instance_id)
    assert error_code(missing) == "InvocationDoesNotExist"
    assert ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"] == []
    time.sleep(0.6)
    assert wait_invocation(ssm, command_id)["Status"] == "Success"


def test_never_finishing_command_can_be_cancelled(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance()
    ssm_world.never_finish(instance.instance_id)
    ssm = ssm_client()
    command_id = send(ssm, [instance.instance_id], "true")

    time.sleep(0.3)
    still = ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"][0]
    assert still["Status"] == "InProgress"
    ssm.cancel_command(CommandId=command_id)
    invocation = wait_invocation(ssm, command_id)
    assert (invocation["Status"], invocation["StatusDetails"]) == ("Cancelled", "Canceled")


def test_wrong_platform_document_is_invalid_platform(ssm_world: SsmWorld) -> None:
    windows = ssm_world.add_instance(platform="windows")
    ssm = ssm_client()
    invocation = wait_invocation(ssm, send(ssm, [windows.instance_id], "echo linux only"))

    assert (invocation["Status"], invocation["StatusDetails"]) == ("Failed", "InvalidPlatform")


def test_powershell_runs_with_pwsh_from_the_sandbox(ssm_world: SsmWorld) -> None:
    windows = ssm_world.add_instance(platform="windows")
    windows.fake_command("pwsh", 'echo "pwsh ran ${@: -1}"\n')
    ssm = ssm_client()
    command_id = send(
        ssm, [windows.instance_id], "Write-Output hi", document="AWS-RunPowerShellScript"
    )
    invocation = wait_invocation(ssm, command_id)

    assert invocation["Status"] == "Success"
    plugin = invocation["CommandPlugins"][0]
    assert plugin["Name"] == "aws:runPowerShellScript"
    assert plugin["Output"].startswith("pwsh ran ") and plugin["Output"].endswith("_script.ps1\n")


def test_instances_are_real_ec2_instances_with_tags(ssm_world: SsmWorld) -> None:
    linux = ssm_world.add_instance(name="db-1", tags={"Env": "prod"})
    windows = ssm_world.add_instance(platform="windows")
    ec2 = boto3.client("ec2", region_name="us-east-1")

    found = {
        i["InstanceId"]: i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    }
    tags = {t["Key"]: t["Value"] for t in found[linux.instance_id]["Tags"]}
    assert tags == {"Name": "db-1", "Env": "prod"}
    assert found[windows.instance_id]["Platform"] == "windows"
    assert "Platform" not in found[linux.instance_id]


def test_second_account_through_assume_role(ssm_world: SsmWorld) -> None:
    home = ssm_world.add_instance()
    remote = ssm_world.add_instance(account_id=ACCOUNT_B)
    role_arn = ssm_world.add_role(ACCOUNT_B, external_id="ext-1")
    sts = boto3.client("sts", region_name="us-east-1")

    with pytest.raises(ClientError) as denied:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="run", ExternalId="wrong")
    assert error_code(denied) == "AccessDenied"
    with pytest.raises(ClientError) as no_role:
        sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT_B}:role/Missing", RoleSessionName="run")
    assert error_code(no_role) == "AccessDenied"

    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="run", ExternalId="ext-1")[
        "Credentials"
    ]
    remote_ssm = ssm_client(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    seen = {
        i["InstanceId"]
        for i in remote_ssm.describe_instance_information()["InstanceInformationList"]
    }
    assert seen == {remote.instance_id}
    with pytest.raises(ClientError) as elsewhere:
        send(remote_ssm, [home.instance_id], "true")
    assert error_code(elsewhere) == "InvalidInstanceId"
    assert (
        wait_invocation(remote_ssm, send(remote_ssm, [remote.instance_id], "true"))["Status"]
        == "Success"
    )
    assert ssm_world.commands[0].account_id == ACCOUNT_B
    assert ssm_world.requests[-1].account == ACCOUNT_B


def test_govcloud_region_and_partition_isolation(ssm_world: SsmWorld) -> None:
    instance = ssm_world.add_instance(account_id=GOV_ACCOUNT, region="us-gov-west-1")
    gov = ssm_world.credentials(GOV_ACCOUNT, partition="aws-us-gov")
    session = boto3.Session(
        aws_access_key_id=gov.access_key_id,
        aws_secret_access_key=gov.secret_access_key,
        region_name="us-gov-west-1",
    )
    identity = session.client("sts").get_caller_identity()
    assert identity["Account"] == GOV_ACCOUNT
    assert identity["Arn"].startswith("arn:aws-us-gov:")

    gov_ssm = session.client("ssm")
    command_id = send(gov_ssm, [instance.instance_id], 'echo "$AWS_SSM_REGION_NAME"')
    assert wait_invocation(gov_ssm, command_id)["CommandPlugins"][0]["Output"] == (
        "us-gov-west-1\n"
    )

    with pytest.raises(ClientError) as refused:
        session.client("ssm", region_name="us-east-1").describe_instance_information()
    assert error_code(refused) == "UnrecognizedClientException"
    by_key = [r for r in ssm_world.requests if r.access_key_id == gov.access_key_id]
    assert {r.host for r in by_key if r.answered_by != "denied:UnrecognizedClientException"} == {
        "sts.us-gov-west-1.amazonaws.com",
        "ssm.us-gov-west-1.amazonaws.com",
    }


def test_simulated_output_skips_bash(ssm_world: SsmWorld) -> None:
    instances = ssm_world.add_instances(3)
    ssm_world.simulate(lambda instance, script: (f"sim {script}", "", 0))
    ssm = ssm_client()
    command_id = send(ssm, [i.instance_id for i in instances], 'touch "$CLOUDOPS_ROOT/x"')

    time.sleep(0.2)
    invocations = ssm.list_command_invocations(CommandId=command_id, Details=True)[
        "CommandInvocations"
    ]
    outputs = {i["CommandPlugins"][0]["Output"] for i in invocations}
    assert outputs == {'sim touch "$CLOUDOPS_ROOT/x"'}
    assert not any((i.sandbox / "x").exists() for i in instances)


def test_commands_sent_from_many_threads_all_run_once(ssm_world: SsmWorld) -> None:
    instances = ssm_world.add_instances(40)
    ids = [i.instance_id for i in instances]
    chunks = [ids[n : n + 10] for n in range(0, len(ids), 10)]

    def send_and_collect(chunk: list[str]) -> dict[str, str]:
        ssm = ssm_client()
        command_id = send(ssm, chunk, 'echo "$AWS_SSM_INSTANCE_ID"')
        deadline = time.time() + 30
        while time.time() < deadline:
            pages = ssm.get_paginator("list_command_invocations").paginate(
                CommandId=command_id, Details=True
            )
            found = [i for p in pages for i in p["CommandInvocations"]]
            if len(found) == len(chunk) and all(i["Status"] == "Success" for i in found):
                return {i["InstanceId"]: i["CommandPlugins"][0]["Output"] for i in found}
            time.sleep(0.1)
        raise AssertionError(f"chunk {chunk[0]}... did not finish")

    with ThreadPoolExecutor(len(chunks)) as pool:
        outputs: dict[str, str] = {}
        for result in pool.map(send_and_collect, chunks):
            outputs.update(result)

    assert outputs == {i: f"{i}\n" for i in ids}
    assert set(ssm_world.send_commands_per_instance.values()) == {1}
