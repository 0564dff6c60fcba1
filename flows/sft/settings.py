"""Where sft-fixer finds the ASA enrollment token, read from the environment or ``.env``.

None of these is the token: they name where it is, or which Prefect Secret blocks may hold it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TOKEN_BLOCK = "sft-enrollment-token"
# Parameter Store's and Secrets Manager's own rules for a name (an ARN for a secret too).
_PARAMETER = re.compile(r"/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_SECRET_ID = re.compile(r"[A-Za-z0-9/_+=.@:-]{1,2048}")
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")


class SftSettings(BaseSettings):
    """sft-fixer's settings (``CLOUDOPS_SFT_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="CLOUDOPS_SFT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    token_blocks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_TOKEN_BLOCK],
        description="The Prefect Secret blocks designated for the enrollment token, comma "
        "separated (CLOUDOPS_SFT_TOKEN_BLOCKS): a flow's token_block must be one of them, "
        "so a run can never send another Secret to an instance.",
    )
    token_parameter: str | None = Field(
        default=None,
        description="An SSM SecureString parameter the operator keeps the token in, in every "
        "account and region of the instances (CLOUDOPS_SFT_TOKEN_PARAMETER). The instances "
        "read it themselves; the flow never reads the token then.",
    )
    token_secret_id: str | None = Field(
        default=None,
        description="Or a Secrets Manager secret (name or ARN) holding the token "
        "(CLOUDOPS_SFT_TOKEN_SECRET_ID).",
    )

    @field_validator("token_blocks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("token_blocks")
    @classmethod
    def _block_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not _BLOCK_NAME.fullmatch(n)]
        if bad:
            raise ValueError(
                f"CLOUDOPS_SFT_TOKEN_BLOCKS holds {len(bad)} name(s) that are not Prefect block "
                "names (lowercase letters, digits and '-')"
            )
        return names

    @field_validator("token_parameter", "token_secret_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value.strip() or None if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_place(self) -> SftSettings:
        if self.token_parameter and self.token_secret_id:
            raise ValueError(
                "set CLOUDOPS_SFT_TOKEN_PARAMETER or CLOUDOPS_SFT_TOKEN_SECRET_ID, not both"
            )
        if self.token_parameter and not (
            len(self.token_parameter) <= 1011 and _PARAMETER.fullmatch(self.token_parameter)
        ):
            raise ValueError(
                "CLOUDOPS_SFT_TOKEN_PARAMETER is not a Parameter Store name (letters, digits, "
                "'_', '.', '-' and '/')"
            )
        if self.token_secret_id and not _SECRET_ID.fullmatch(self.token_secret_id):
            raise ValueError("CLOUDOPS_SFT_TOKEN_SECRET_ID is not a secret name or ARN")
        return self
