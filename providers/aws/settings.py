"""The credential variables of the tool we replace, which must keep working unchanged."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from providers.partitions import Environment


class LegacyCredentials(BaseSettings):
    """``AWS_ACCESS_KEY_ID_COM`` and friends, from the environment or a ``.env`` file."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    aws_access_key_id_com: SecretStr | None = Field(default=None)
    aws_secret_access_key_com: SecretStr | None = Field(default=None)
    aws_session_token_com: SecretStr | None = Field(default=None)
    aws_access_key_id_gov: SecretStr | None = Field(default=None)
    aws_secret_access_key_gov: SecretStr | None = Field(default=None)
    aws_session_token_gov: SecretStr | None = Field(default=None)

    def keys_for(
        self, environment: Environment
    ) -> tuple[SecretStr, SecretStr, SecretStr | None] | None:
        """(access key id, secret access key, session token) when both keys are set."""
        suffix = Environment(environment).value
        key_id = getattr(self, f"aws_access_key_id_{suffix}")
        secret = getattr(self, f"aws_secret_access_key_{suffix}")
        token = getattr(self, f"aws_session_token_{suffix}")
        if key_id is None or secret is None:
            return None
        if not key_id.get_secret_value() or not secret.get_secret_value():
            return None
        return key_id, secret, token
