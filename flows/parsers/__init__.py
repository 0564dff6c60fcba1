"""The parsers of the remote scripts' output, in one place for other code and scripts.

Each parser lives next to the workflow whose script it reads; this package re-exports them.
"""

from flows.linux_patching.post_check import AgentState as AgentState
from flows.linux_patching.post_check import KernelTargetSource as KernelTargetSource
from flows.linux_patching.post_check import PostReport as PostReport
from flows.linux_patching.post_check import parse_post_report as parse_post_report
from flows.linux_patching.qc_report import CollectedPrepFiles as CollectedPrepFiles
from flows.linux_patching.qc_report import QcReport as QcReport
from flows.linux_patching.qc_report import parse_collected_prep_files as parse_collected_prep_files
from flows.linux_patching.qc_report import parse_qc_report as parse_qc_report
from flows.sft.detection import SftActionOutcome as SftActionOutcome
from flows.sft.detection import SftActionResult as SftActionResult
from flows.sft.detection import SftNeed as SftNeed
from flows.sft.detection import SftState as SftState
from flows.sft.detection import SftStatus as SftStatus
from flows.sft.detection import parse_sft_action_result as parse_sft_action_result
from flows.sft.detection import parse_sft_detection as parse_sft_detection
