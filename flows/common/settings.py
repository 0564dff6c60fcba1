"""Where the flows keep their records and reports, read from the environment or ``.env``.

Every value has a default that works on a laptop, so a new user runs a flow with nothing set.
Directories are created when something is written to them, never at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.common.private_files import private_directory

DEFAULT_DATA_DIR = Path("~/.local/share/cloudops-flows")
DATABASE_FILE_NAME = "cloudops.db"


class Settings(BaseSettings):
    """The flows' own settings. ``DATABASE_URL`` keeps the name most tools already use."""

    model_config = SettingsConfigDict(
        env_prefix="CLOUDOPS_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Directory of the default SQLite database and reports (CLOUDOPS_DATA_DIR).",
    )
    database_url: str = Field(
        default="",
        repr=False,  # a PostgreSQL URL carries its password
        validation_alias=AliasChoices("DATABASE_URL", "CLOUDOPS_DATABASE_URL", "database_url"),
        description="Any SQLAlchemy URL; empty means a SQLite file in the data directory.",
    )
    reports_dir: Path = Field(
        default=DEFAULT_DATA_DIR / "reports",
        description="Where flows write their markdown reports (CLOUDOPS_REPORTS_DIR); "
        "default <data_dir>/reports.",
    )
    reports_destination: str | None = Field(
        default=None,
        description="Where every report file is also written, whichever worker ran the flow "
        "(CLOUDOPS_REPORTS_DESTINATION): s3://bucket/prefix or the absolute path of a shared "
        "directory. Wins over the AWS provider block's reports destination.",
    )
    changes_dir: Path = Field(
        default=DEFAULT_DATA_DIR / "changes",
        description="The only directory a change_csv path may name (CLOUDOPS_CHANGES_DIR); "
        "default <data_dir>/changes.",
    )
    max_concurrent_groups: int = Field(
        default=8,
        ge=1,
        le=256,
        description="How many (account, region) groups run at once "
        "(CLOUDOPS_MAX_CONCURRENT_GROUPS).",
    )

    ssm_calls_per_second: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="When above 0, the Prefect rate limits ssm-<account>-<region> are created on "
        "first use with this many SSM calls a second (CLOUDOPS_SSM_CALLS_PER_SECOND); 0 uses "
        "only limits made beforehand (prefect gcl create).",
    )
    ssm_rate_limit_wait_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Longest wait for a slot of an SSM rate limit before calling all the same "
        "(CLOUDOPS_SSM_RATE_LIMIT_WAIT_SECONDS).",
    )

    @model_validator(mode="before")
    @classmethod
    def _directories_under_data_dir(cls, data: Any) -> Any:
        # The reports and changes defaults follow CLOUDOPS_DATA_DIR unless set on their own.
        if isinstance(data, dict) and data.get("data_dir"):
            for name in ("reports", "changes"):
                if not data.get(f"{name}_dir"):
                    data = {**data, f"{name}_dir": Path(str(data["data_dir"])) / name}
        return data

    @field_validator("data_dir", "reports_dir", "changes_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        if not self.database_url.strip():
            self.database_url = f"sqlite:///{self.data_dir / DATABASE_FILE_NAME}"
        return self

    def ensure_data_dir(self) -> Path:
        """The data directory, created (0700) if it does not exist yet, else tightened to 0700
        when it is ours: it holds every script's output."""
        return private_directory(self.data_dir)


def get_settings() -> Settings:
    """Settings as the environment says now (read on every call, so a changed variable counts)."""
    return Settings()
