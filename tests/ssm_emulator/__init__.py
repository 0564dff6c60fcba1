"""A test-side SSM agent emulator in front of moto: Run Command that really runs scripts.

moto alone has no ``ListCommandInvocations`` or ``DescribeInstanceInformation`` and finishes
every command at once with empty output. This package answers those SSM operations the way AWS
does, runs each script for real with bash in a per-instance sandbox, and can make AWS misbehave
on demand (throttling, injected errors, lost agents, lagging reads).

Use it through the ``ssm_world`` fixture (``from tests.ssm_emulator.plugin import *`` in a
``conftest.py``). It starts ``mock_aws`` and yields an :class:`SsmWorld`; clients created with
boto3 during the test go through it (sessions created before the fixture do not).

Building the world::

    inst = world.add_instance(account_id="111111111111", region="us-east-1", platform="linux",
                              name=None, tags=None, managed=True, online=True)
    inst.instance_id, inst.sandbox, inst.root, inst.bin, inst.home   # Path: root == sandbox
    inst.write_file("/etc/os-release", "ID=rhel\\n")                   # under the sandbox
    inst.fake_command("uname", 'echo 5.14.0-427.el9.x86_64')          # bash body, on PATH
    world.add_instances(50, region="us-west-2")                       # same arguments
    world.add_role("222222222222", role_name="OrganizationAccountAccessRole",
                   partition="aws", external_id=None)                 # -> role ARN
    creds = world.credentials("333333333333", partition="aws-us-gov") # IAM user keys there
    world.require_existing_roles(True)   # default: AssumeRole into a missing role is AccessDenied

Instances are real moto EC2 instances (``DescribeInstances`` in their account and region finds
them with their tags; Windows ones report ``Platform: windows``). A request acts as the account
that owns its access key (moto's keys: assumed-role keys, ``world.credentials``); any other key,
such as the fixture's environment keys, acts as moto's default account ``123456789012``. The
region is the endpoint's. A key moto issued in one partition is refused by the other's
endpoints (``UnrecognizedClientException`` for SSM, ``InvalidClientTokenId`` for STS).

Agent behaviour::

    world.command_delay(pending=0.1, in_progress_min=0.0, delivery_timeout=None)
    world.set_offline(iid)                      # ConnectionLost; commands end DeliveryTimedOut
    world.set_offline(iid, outcome="Undeliverable")            # ... or Failed/Undeliverable
    world.set_offline(iid, mid_run=True, after=0.5)            # drops 0.5 s into its next run
    world.set_online(iid); world.set_unmanaged(iid); world.never_finish(iid)
    world.invocation_lag(seconds)    # reads don't know a new command for that long
    world.simulate(lambda instance, script: ("out", "", 0))   # no bash (benchmarks); None undoes
    world.simulate(lambda instance, script: ("out", "", 194, 20.0))  # ... with its own run time

The reboot protocol (a script that exits 194)::

    world.reboot_time(0.5)                 # seconds the agent is away (ConnectionLost)
    world.boot_falls_back(iid)             # the boot keeps the old kernel
    world.agent_never_returns(iid)         # ConnectionLost for good (SSM agent issue 320)
    inst.boot_hook = fn(instance, fell_back)   # the fake host's rule: which kernel it boots
    inst.boot_id, inst.boots; world.reboots    # Counter[instance_id]

An invocation whose script exits 194 stays InProgress; the agent goes ConnectionLost for the
reboot time, the instance boots (a new ``/proc/sys/kernel/random/boot_id``, uptime from zero,
then its ``boot_hook``), the agent comes back Online and runs the same script again from the
start; the invocation ends with that run's outcome (and output). An agent that never returns
leaves the invocation InProgress until the command expires.

Faults (decided per HTTP attempt, so botocore's own retries draw again)::

    world.throttle(share=0.3, services=("ssm", "sts"), seed=1)
    world.fail_next("ListCommandInvocations", code="ExpiredTokenException", times=1, after=0,
                    message=None, status=400, service=None)
    world.lose_answers("SendCommand", times=1)  # carried out, answer lost (connection closed)
    world.on_accepted(lambda command: ...)      # called as each SendCommand is accepted
    world.deny_secret_reads(iid)     # its instance profile may read no parameter or secret
    world.deny_list_bucket(bucket)   # no s3:ListBucket: GetObject of an absent key is 403
    world.deny_get_object(bucket)    # no s3:GetObject: every read there is 403

What happened::

    world.calls                       # Counter[(service, operation)], every attempt
    world.throttled                   # Counter[(service, operation)] answered with throttling
    world.send_commands_per_instance  # Counter[instance_id] of accepted SendCommands
    world.requests                    # [RecordedRequest(service, operation, host,
                                      #   access_key_id, account, region, answered_by, at)]
    world.commands, world.command(id) # EmulatedCommand: command_id, instance_ids, parameters,
                                      #   script, comment, execution_timeout, invocations...
    world.s3_failures                 # output uploads that found no bucket
    world.secret_reads                # [SecretRead(instance_id, account_id, region, operation,
                                      #   name, decrypted, answer)]: the instances' aws reads

From another process (a flow run started as a subprocess)::

    from tests.ssm_emulator.http_bridge import serve_world
    with serve_world(world) as url:   # http://127.0.0.1:<port>, the block's endpoint_url
        ...                           # JSON and query services (SSM, STS, EC2); not S3

SSM behaviour emulated (everything else in SSM is moto's):

- ``SendCommand``: ``AWS-RunShellScript`` / ``AWS-RunPowerShellScript`` with ``InstanceIds``
  (more than 50: ``ValidationException``; any id not managed in the caller's account and
  region: ``InvalidInstanceId`` for the whole call), ``commands``, ``executionTimeout``
  (default 3600), ``TimeoutSeconds``, ``Comment`` (at most 100), ``MaxConcurrency``,
  ``MaxErrors``, ``OutputS3BucketName``/``OutputS3KeyPrefix``. Duplicate ids count once.
- Invocation life: ``Pending`` for ``pending`` seconds, ``InProgress`` while the script runs
  (at least ``in_progress_min``), then ``Success`` (exit 0), ``Failed``/``Failed`` with the
  exit code as ``ResponseCode``, or ``TimedOut``/``ExecutionTimedOut`` (ResponseCode -1, the
  process group killed) at ``executionTimeout``. An offline agent's invocation stays
  ``Pending`` until ``TimeoutSeconds + executionTimeout`` (or ``delivery_timeout``), then
  ``TimedOut``/``DeliveryTimedOut``. A shell document on a Windows instance (or the reverse)
  ends ``Failed``/``InvalidPlatform``. ``CancelCommand`` ends ``Cancelled``/``Canceled``.
- ``ListCommandInvocations`` (pages of at most 50; ``Details=True`` adds the plugin with
  ``Output`` = stdout + ``\\n----------ERROR-------\\n`` + stderr cut to 2,500 characters);
  a command not known (yet) lists no invocations. ``GetCommandInvocation``: stdout up to
  24,000, stderr up to 8,000 characters, ``InvocationDoesNotExist`` when unknown.
- With an output bucket, the full stdout and stderr (each when not empty) go to moto S3 at
  ``<prefix>/<command-id>/<instance-id>/awsrunShellScript/0.awsrunShellScript/stdout``.
- ``DescribeInstanceInformation``: managed instances of the caller's account and region,
  ``Filters`` (or ``InstanceInformationFilterList``) on ``InstanceIds``, ``PingStatus``,
  ``PlatformTypes``, ``ResourceType``; pages of ``MaxResults`` (5..50).
- Scripts run with bash (``pwsh`` for PowerShell when on PATH, else the invocation fails
  saying so) in ``<sandbox>/var/lib/amazon/ssm/<id>/document/orchestration/...``, with
  ``CLOUDOPS_ROOT=<sandbox>``, ``HOME=<sandbox>/root``, ``PATH=<sandbox>/bin:$PATH``,
  ``AWS_SSM_INSTANCE_ID`` and ``AWS_SSM_REGION_NAME``; at most 8 at a time. A fake ``aws``
  follows the sandbox's ``bin`` on the PATH: ``aws ssm get-parameter --with-decryption`` and
  ``aws secretsmanager get-secret-value`` (``--query ... --output text``) answer from moto's
  Parameter Store and Secrets Manager of the instance's account, as its instance profile.
"""

from tests.ssm_emulator.commands import EmulatedCommand, Invocation
from tests.ssm_emulator.fleet import EmulatedInstance
from tests.ssm_emulator.world import Credentials, RecordedRequest, SsmWorld

__all__ = [
    "Credentials",
    "EmulatedCommand",
    "EmulatedInstance",
    "Invocation",
    "RecordedRequest",
    "SsmWorld",
]
