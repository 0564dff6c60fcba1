"""Parsers of the output of the remote scripts, into the typed reports the flows judge."""

from flows.parsers.post import AgentState as AgentState
from flows.parsers.post import KernelTargetSource as KernelTargetSource
from flows.parsers.post import PostReport as PostReport
from flows.parsers.post import parse_post_report as parse_post_report
