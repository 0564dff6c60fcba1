"""Artifacts read back from the tests' Prefect server, filtered by the server.

The session's server holds every artifact of every test, and an unfiltered read returns only
its first page: a test must ask for its own run's (or key's) artifacts, or it passes or fails
with the order the tests ran in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import Artifact


def read_artifacts(
    *, flow_run_id: UUID | str | None = None, keys: Iterable[str] = ()
) -> list[Artifact]:
    """The artifacts of ``flow_run_id`` and/or with one of ``keys`` (at least one is given)."""
    wanted = list(keys)
    assert flow_run_id is not None or wanted, "say whose artifacts"
    run_ids: Any = [UUID(str(flow_run_id))] if flow_run_id is not None else None
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=run_ids) if run_ids else None,
                key=ArtifactFilterKey(any_=wanted) if wanted else None,
            )
        )
