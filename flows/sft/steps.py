"""Running one SFT script (detect, install, reset) on a few instances, one script per platform,
through the engine; results redacted and recorded as one step of the run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from prefect import get_run_logger
from pydantic import BaseModel

from flows.common.remote_scripts import interpreter_for, load_script, render_script
from flows.common.reporting import artifact_key
from flows.common.runs import WorkflowRun
from flows.sft.detection import (
    SftActionResult,
    SftState,
    parse_sft_action_result,
    parse_sft_detection,
)
from flows.sft.token import EnrollmentToken, redact, token_handed_over
from providers.base import Platform, ScriptResult, Target


class SftScript(StrEnum):
    """The SFT scripts, each with a Linux and (but install) a Windows version."""

    DETECT = "detect"
    INSTALL = "install"
    RESET = "reset"


_SCRIPTS: dict[tuple[SftScript, Platform], str] = {
    (SftScript.DETECT, Platform.LINUX): "linux/sft_detect.sh",
    (SftScript.DETECT, Platform.WINDOWS): "windows/sft_detect.ps1",
    (SftScript.INSTALL, Platform.LINUX): "linux/sft_install.sh",
    (SftScript.RESET, Platform.LINUX): "linux/sft_reset.sh",
    (SftScript.RESET, Platform.WINDOWS): "windows/sft_reset.ps1",
}

Parse = Callable[[ScriptResult, Target], BaseModel]


def why_not_run(result: ScriptResult) -> str:
    """Why a script gave no usable output on an instance."""
    return result.error or f"the script ended {result.status.value}"


def detection_of(result: ScriptResult, target: Target) -> SftState:
    """The agent's state from a detection result (unknown, with the reason, if it never ran)."""
    if result.status.reached:
        return parse_sft_detection(result.stdout, target.platform)
    return SftState(platform=target.platform, error=why_not_run(result))


def action_of(result: ScriptResult, _target: Target) -> SftActionResult:
    """What an install or reset script said it did."""
    return parse_sft_action_result(result.stdout)


@dataclass(frozen=True)
class SftSteps:
    """Runs SFT scripts for one flow run. The install and reset scripts are told where to read
    the enrollment token (``token``, when one is needed); every result is redacted of the token
    the flow holds, should an instance print it."""

    run: WorkflowRun
    token: EnrollmentToken | None

    @contextmanager
    def token_for(self, targets: Sequence[Target]) -> Iterator[dict[str, str]]:
        """The script parameters that say where ``targets`` read the token, while it is there
        (see :func:`flows.sft.token.token_handed_over`)."""
        if self.token is None:
            raise ValueError("install and reset need the enrollment token; none was loaded")
        places = {(t.account_id, t.region) for t in targets}
        with token_handed_over(
            self.token, self.run.provider, places, self.run.flow_run_id
        ) as parameters:
            yield parameters

    def run_step(
        self,
        step: str,
        script: SftScript,
        targets: Sequence[Target],
        *,
        timeout_seconds: int,
        parse: Parse,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, ScriptResult]:
        """Results of ``script`` (given ``params``) by instance id, recorded as ``step`` with
        what ``parse`` read."""
        secret = self.token.known_value if self.token is not None else None
        results: list[ScriptResult] = []
        for platform in Platform:
            chosen = [t for t in targets if t.platform is platform]
            if not chosen:
                continue
            name = _SCRIPTS[(script, platform)]
            interpreter = interpreter_for(name)
            request = self.run.request(
                step,
                render_script(load_script(name), params or {}, interpreter),
                timeout_seconds,
                interpreter=interpreter,
            )
            batch = self.run.run_script(
                step,
                chosen,
                request,
                progress_key=artifact_key(self.run.workflow, step, platform.value, "progress"),
                # Per step: verifying runs the same script as detecting, and the engine
                # re-attaches to a command already sent under the same key instead of sending.
                run_key=f"{self.run.flow_run_id}:{self.run.workflow}:{step}",
            )
            results.extend(redact(r, secret) for r in batch.results)
        by_id = {t.instance_id: t for t in targets}
        parsed = {
            r.instance_id: parse(r, by_id[r.instance_id]).model_dump(mode="json") for r in results
        }
        self.run.record_step(step, results, parsed)
        return {r.instance_id: r for r in results}

    def verify(
        self,
        targets: Sequence[Target],
        *,
        attempts: int,
        delay_seconds: float,
        timeout_seconds: int,
    ) -> dict[str, tuple[ScriptResult, SftState]]:
        """Detect again on the instances acted on, per instance its last result and state.

        A started agent enrolls in the background, so an instance not healthy yet is detected
        again after ``delay_seconds``, up to ``attempts`` detections in all.
        """
        last: dict[str, tuple[ScriptResult, SftState]] = {}
        pending = list(targets)
        for attempt in range(1, attempts + 1):
            if not pending:
                break
            if attempt > 1:
                get_run_logger().info(
                    "%d instance(s) not healthy yet; detecting again in %s s",
                    len(pending),
                    delay_seconds,
                )
                time.sleep(delay_seconds)
            results = self.run_step(
                f"verify-{attempt}",
                SftScript.DETECT,
                pending,
                timeout_seconds=timeout_seconds,
                parse=detection_of,
            )
            for target in pending:
                result = results[target.instance_id]
                last[target.instance_id] = (result, detection_of(result, target))
            pending = [t for t in pending if not last[t.instance_id][1].healthy]
        return last
