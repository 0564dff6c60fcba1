"""Parsers of the output of the remote scripts, into the typed reports the flows judge."""

from flows.parsers.post import AgentState as AgentState
from flows.parsers.post import KernelTargetSource as KernelTargetSource
from flows.parsers.post import PostReport as PostReport
from flows.parsers.post import parse_post_report as parse_post_report
from flows.parsers.qc import CollectedPrepFiles as CollectedPrepFiles
from flows.parsers.qc import QcReport as QcReport
from flows.parsers.qc import parse_collected_prep_files as parse_collected_prep_files
from flows.parsers.qc import parse_qc_report as parse_qc_report
from flows.parsers.sft import SftActionOutcome as SftActionOutcome
from flows.parsers.sft import SftActionResult as SftActionResult
from flows.parsers.sft import SftNeed as SftNeed
from flows.parsers.sft import SftState as SftState
from flows.parsers.sft import SftStatus as SftStatus
from flows.parsers.sft import parse_sft_action_result as parse_sft_action_result
from flows.parsers.sft import parse_sft_detection as parse_sft_detection
