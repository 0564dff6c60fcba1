"""Secrets a script reads at run time from SSM Parameter Store, never from its own text.

A flow that holds a secret (the ASA enrollment token) puts it in a ``SecureString`` parameter
named after the flow run, under ``/cloudops-flows/``, in each (account, region) whose
instances need it; the script reads it there with the AWS CLI as the instance profile, and the
flow deletes the parameter once those scripts have run. So the secret is never in a command's
parameters (which ``ssm:ListCommands`` shows to anyone allowed it), in the agent's script file
on the instance, or in the output bucket.

Functions here take boto3 clients and let ``botocore.exceptions.ClientError`` through;
``providers.aws.provider`` turns those into ``AwsError`` with the account and region.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from pydantic import SecretStr

from providers.aws.errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

# Every parameter the flows create lives under this path: the instance profile's
# ssm:GetParameter and the caller's ssm:PutParameter / ssm:DeleteParameter are granted on it.
PARAMETER_PREFIX = "/cloudops-flows/"
# Parameter Store's own rule for a name, below the prefix.
_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def parameter_name(name: str) -> str:
    """The full name of the parameter for ``name`` (``sft-enrollment-token/<flow run id>``)."""
    if not _NAME.fullmatch(name) or len(PARAMETER_PREFIX + name) > 1011:
        raise ValueError(
            f"{name!r} cannot name a parameter: use letters, digits, '_', '.', '-' and '/' "
            "between parts"
        )
    return PARAMETER_PREFIX + name


def put_secure_parameter(
    ssm: SSMClient, name: str, value: SecretStr, kms_key_id: str | None
) -> None:
    """Create (or replace, for a retried run) the ``SecureString`` parameter ``name``,
    encrypted with ``kms_key_id`` (default: the account's ``alias/aws/ssm``)."""
    if kms_key_id:
        ssm.put_parameter(
            Name=name,
            Value=value.get_secret_value(),
            Type="SecureString",
            KeyId=kms_key_id,
            Overwrite=True,
            Description=_DESCRIPTION,
        )
    else:
        ssm.put_parameter(
            Name=name,
            Value=value.get_secret_value(),
            Type="SecureString",
            Overwrite=True,
            Description=_DESCRIPTION,
        )


def delete_parameter(ssm: SSMClient, name: str) -> bool:
    """Delete the parameter ``name``; False when it was not there (already deleted)."""
    try:
        ssm.delete_parameter(Name=name)
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return False
        raise
    return True


_DESCRIPTION = "cloudops-flows: a secret of one flow run, deleted when its scripts have run"
