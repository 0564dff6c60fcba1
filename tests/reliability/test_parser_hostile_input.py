"""Hostile text for every parser of host output and user input: a result or a clear error,
never another exception, never a hang.

Audit of the property tests the parser authors already wrote (not repeated here):

- change file, ``tests/flows/changes/test_parse_properties.py``: ``parse_change_csv`` on any text,
  any bytes and rows of near-valid cells; ``load_change_input`` on any short text; valid
  changes read back whatever the header spelling; one bad cell named at its row and column.
- QC report, ``tests/parsers/test_qc_parser.py``: ``parse_qc_report`` on any text and on
  shuffled report lines; ``parse_collected_prep_files`` on any text.
- post report, ``tests/parsers/test_post_parser.py``: ``parse_post_report`` on lines of summary
  markers and ``KEY=value`` pairs.
- SFT detection, ``tests/parsers/test_sft_parser.py``: ``parse_sft_detection`` on any text and
  marker lines; a token printed by mistake never reaches the state.
- kernels, ``tests/parsers/test_kernels.py``: ``sort_kernels`` on numeric versions only.

What none of them tries, and this module adds: the control characters real output carries
(NUL, ANSI escapes, bare carriage returns, NEL and the Unicode line separators that
``str.splitlines`` breaks on but a shell does not), each parser's own marker lines repeated
and interleaved with that, very long lines and very many lines (a parser that backtracks
badly hangs a flow's task), and the parsers with no property test at all:
``parse_sft_action_result``, ``validate_change_number``, ``validate_kernel_version`` and the
other kernel helpers, and the SSM plugin output splitter.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.changes import ChangeFileError, ChangeSpec, parse_change_csv, validate_change_number
from flows.linux_patching.kernels import (
    MAX_KERNEL_VERSION_LENGTH,
    base_kernel,
    distro_from_kernel,
    normalize_kernel,
    read_staged_kernel,
    sort_kernels,
    validate_kernel_version,
)
from flows.linux_patching.post_check import (
    SUMMARY_BEGIN,
    SUMMARY_END,
    PostReport,
    parse_post_report,
)
from flows.linux_patching.qc_report import (
    FACTS_BEGIN,
    FACTS_END,
    parse_collected_prep_files,
    parse_qc_report,
)
from flows.sft.detection import (
    SftActionOutcome,
    SftState,
    parse_sft_action_result,
    parse_sft_detection,
)
from providers.aws.ssm import ERROR_MARKER, split_plugin_output

# Characters and sequences that real output carries and a careless parser trips on.
HOSTILE_PIECES = [
    "\x00",
    "\x1b[1;31m",
    "\x1b[0m",
    "\x1b[",
    "\x1b]0;title\x07",
    "\r",
    "\r\n",
    "\x85",
    "\u2028",
    "\u2029",
    "\x0b",
    "\x0c",
    "\x1c",
    "\ufeff",
    "\x7f",
    "\t",
    '"',
    "'",
    "=",
    ":",
    ",",
    "$(touch /tmp/pwned)",
    "`id`",
    "; rm -rf /",
    "%s%n",
    "\\",
]
SEPARATORS = ["\n", "\r\n", "\r", "\x00", "\x85", "\u2028", "", " "]

QC_VOCABULARY = [
    "===== QC report for web01 =====",
    "(Current date): Tue May 14 10:00:00 UTC 2024",
    "(Server running since): 2024-05-01 08:12:44",
    "(Current running kernel version): 4.18.0-553.5.1.el8_10.x86_64",
    "(Is Crowdstrike running): Yes",
    "(Current Crowdstrike Version): 7.10.16303.0",
    "(Available Kernel Updates):",
    "kernel.x86_64  4.18.0-553.45.1.el8_10  rhel-8-for-x86_64-baseos-rpms",
    "kernel-core.x86_64",
    "linux-image-5.15.0-105-generic/jammy-updates 5.15.0-105.115 amd64",
    "linux-image-generic/jammy-updates 5.15.0.105.102 amd64",
    "NO KERNEL UPDATES AVAILABLE",
    "(Test Repositories Result): PASSED",
    "(Disk Space Check Result): FAILED",
    FACTS_BEGIN,
    "ID=rhel",
    "VERSION_ID=8.10",
    "VERSION_CODENAME=jammy",
    FACTS_END,
    "----- BEGIN CLOUDOPS FILE qc_report.txt -----",
    "----- END CLOUDOPS FILE qc_report.txt -----",
    "----- BEGIN CLOUDOPS FILE patchme.sh -----",
    "----- END CLOUDOPS FILE patchme.sh -----",
    "----- CLOUDOPS FILE patchme.sh MISSING -----",
    "----- CLOUDOPS FILE qc_report.txt TRUNCATED -----",
    'newkernel="4.18.0-553.45.1.el8_10"',
]
POST_VOCABULARY = [
    SUMMARY_BEGIN,
    SUMMARY_END,
    "SUMMARY_VERSION=1",
    "SUMMARY_VERSION=2",
    "KERNEL_RUNNING=4.18.0-553.45.1.el8_10.x86_64",
    "KERNEL_TARGET=kernel-4.18.0-553.45.1.el8_10",
    "KERNEL_TARGET_SOURCE=patchme",
    "AGENT_FALCON_SENSOR=running",
    "AGENT_BESCLIENT=installed_stopped",
    "AGENT_SFTD=not_installed",
    "LAST_BOOT=2024-05-14T10:00:00Z",
    "UPTIME_SECONDS=-1",
    "DISK_ROOT_USED_PCT=99999999999999999999",
    "LVM_MISSING_PVS=,,,",
    "FAILED_UNIT_NAMES=a.service,b.service",
    "PKG_TRANSACTIONS_TODAY=unknown",
]
SFT_VOCABULARY = [
    "SFT_PLATFORM=linux",
    "SFT_PLATFORM=windows",
    "SFT_INSTALLED=yes",
    "SFT_INSTALLED=no",
    "SFT_TYPE=server-tools",
    "SFT_STATUS=running",
    "SFT_STATUS=stopped",
    "SFT_ENROLLMENT_TOKEN=exists",
    "SFT_DEVICE_TOKEN=missing",
    "SFT_CONFIG=exists",
    "LINUX_DISTRO=rhel",
    "WINDOWS_VERSION=2019",
    "SFT_ACTION_RESULT=installed",
    "SFT_ACTION_RESULT=reset",
    "SFT_ACTION_RESULT=failed:missing_enrollment_token",
    "SFT_ACTION_RESULT=failed:",
    "SFT_ACTION_RESULT=",
]
CSV_VOCABULARY = [
    "change_number,instance_id,account_id,region",
    "Change Number;Instance ID;Account ID;Region",
    "CHG0012345,i-0123456789abcdef0,012345678901,us-east-1",
    "CHG0012345,i-0123456789abcdef0,12345678901,us-gov-west-1",
    "CHG0099999,i-89abcdef,012345678901,us-west-2,windows,web01",
    '"CHG0012345","i-0123456789abcdef0","012345678901","moon-1"',
    "CHG$(id),i-0123456789abcdef0,012345678901,us-east-1",
    '"unterminated,quote',
    ",,,",
]
SSM_VOCABULARY = [ERROR_MARKER, f"\n{ERROR_MARKER}\n", "stdout line", "stderr line"]


def hostile_text(vocabulary: list[str]) -> st.SearchStrategy[str]:
    """Text made of a parser's own marker lines, hostile characters, any text, long runs and
    repeated markers, joined by whatever line breaks (and non-breaks) output can hold."""
    piece = st.one_of(
        st.sampled_from(vocabulary),
        st.sampled_from(HOSTILE_PIECES),
        st.text(max_size=30),
        st.text(st.characters(max_codepoint=0x9F, categories=["Cc"]), min_size=1, max_size=20),
        st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(100, 3000)),
        st.builds(
            lambda line, sep, n: (line + sep) * n,
            st.sampled_from(vocabulary),
            st.sampled_from(SEPARATORS),
            st.integers(2, 300),
        ),
    )
    return st.lists(st.tuples(piece, st.sampled_from(SEPARATORS)), max_size=25).map(
        lambda parts: "".join(p + s for p, s in parts)
    )


HOSTILE = settings(max_examples=150, deadline=None)
# What may reach a script or a file name: the specification's own patterns.
SAFE_CHANGE_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,50}")
SAFE_KERNEL = re.compile(r"[0-9]+\.[0-9]+[A-Za-z0-9._+~-]*")


@HOSTILE
@given(hostile_text(QC_VOCABULARY), st.booleans())
def test_qc_report_parser_on_hostile_output(text: str, require_crowdstrike: bool) -> None:
    report = parse_qc_report(text, require_crowdstrike=require_crowdstrike)

    assert report.passed is (not report.failure_reasons)
    for kernel in report.available_kernels:
        assert kernel and "\n" not in kernel and "\x00" not in kernel
    report.model_dump_json()  # the flows store it as JSON


@HOSTILE
@given(hostile_text(QC_VOCABULARY))
def test_collected_prep_files_parser_on_hostile_output(text: str) -> None:
    files = parse_collected_prep_files(text)

    staged = read_staged_kernel(files.patchme) if files.patchme is not None else None
    assert staged is None or not ({'"', "\n"} & set(staged))
    files.model_dump_json()


@HOSTILE
@given(hostile_text(POST_VOCABULARY), st.none() | st.sampled_from(HOSTILE_PIECES))
def test_post_report_parser_on_hostile_output(text: str, target: str | None) -> None:
    report = parse_post_report(text, target_kernel=target)

    assert isinstance(report, PostReport)
    assert report.passed == (not report.failure_reasons)
    assert report.summary_found or not report.passed
    report.model_dump_json()


@HOSTILE
@given(hostile_text(SFT_VOCABULARY))
def test_sft_detection_parser_on_hostile_output(text: str) -> None:
    state = parse_sft_detection(text)

    assert isinstance(state, SftState)
    state.model_dump_json()


@HOSTILE
@given(hostile_text(SFT_VOCABULARY))
def test_sft_action_result_parser_on_hostile_output(text: str) -> None:
    result = parse_sft_action_result(text)

    assert result.outcome in set(SftActionOutcome)
    if result.succeeded:
        assert result.reason is None
    else:
        assert result.message  # what a person does about it
    result.model_dump_json()


@HOSTILE
@given(hostile_text(CSV_VOCABULARY))
def test_change_file_parser_on_hostile_text(text: str) -> None:
    try:
        spec = parse_change_csv(text)
    except ChangeFileError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        assert all(p.row is None or p.row >= 1 for p in exc.problems)
    else:
        _assert_only_safe_values(spec)


@HOSTILE
@given(hostile_text(CSV_VOCABULARY), st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
def test_change_file_parser_on_hostile_bytes(text: str, encoding: str) -> None:
    data = text.encode(encoding, errors="replace")
    try:
        spec = parse_change_csv(data)
    except ChangeFileError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
    else:
        _assert_only_safe_values(spec)


def _assert_only_safe_values(spec: ChangeSpec) -> None:
    """What a change file lets through is what the specification allows, nothing else."""
    assert SAFE_CHANGE_NUMBER.fullmatch(spec.change_number)
    for target in spec.targets:
        assert re.fullmatch(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})", target.instance_id)
        assert re.fullmatch(r"[0-9]{12}", target.account_id)
        assert re.fullmatch(r"[a-z]{2}(?:-gov)?-[a-z]+-[0-9]", target.region)


@HOSTILE
@given(hostile_text(["CHG0012345", " CHG-1_a ", *CSV_VOCABULARY[2:]]))
def test_change_numbers_are_refused_or_safe(text: str) -> None:
    try:
        number = validate_change_number(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert SAFE_CHANGE_NUMBER.fullmatch(number)


KERNEL_VOCABULARY = [
    "kernel-core-4.18.0-553.45.1.el8_10.x86_64",
    "0:5.14.0-427.13.1.el9_4",
    "linux-image-5.15.0-105-generic",
    "6.1.79-99.167.amzn2023",
    "4.14.343-261.564.amzn2.aarch64",
    "6.1.0-18-amd64",
    ".el8_10",
    '4.18.0-553.45.1.el8_10"; reboot; echo "',
]


@HOSTILE
@given(hostile_text(KERNEL_VOCABULARY))
def test_kernel_versions_are_refused_or_safe_for_a_script(text: str) -> None:
    try:
        version = validate_kernel_version(text)
    except ValueError as exc:
        assert "is not a kernel version" in str(exc)
    else:
        assert SAFE_KERNEL.fullmatch(version) and len(version) <= MAX_KERNEL_VERSION_LENGTH


@HOSTILE
@given(st.lists(hostile_text(KERNEL_VOCABULARY), max_size=5))
def test_kernel_helpers_answer_any_text(texts: list[str]) -> None:
    for text in texts:
        normalize_kernel(text)
        base_kernel(text)
        distro_from_kernel(text, codename=text[:10])
        staged = read_staged_kernel(text)
        assert staged is None or not ({'"', "\n"} & set(staged))
    assert len(sort_kernels(texts)) <= len(texts)


@HOSTILE
@given(hostile_text(SSM_VOCABULARY))
def test_ssm_plugin_output_splits_without_losing_text(text: str) -> None:
    output = split_plugin_output(text)

    if ERROR_MARKER not in text:
        assert (output.stdout, output.stderr) == (text, "")
    else:
        assert len(output.stdout) + len(output.stderr) <= len(text)


# Deterministic worst cases: one very long line, very many marker lines, a wall of control
# characters. Each must be answered in well under a second; the bound is loose because the
# machine is shared, and a parser that backtracks badly takes minutes, not seconds.
MEGABYTE = 1_000_000
PARSERS: dict[str, Callable[[str], object]] = {
    "qc report": parse_qc_report,
    "collected prep files": parse_collected_prep_files,
    "post report": parse_post_report,
    "sft detection": parse_sft_detection,
    "sft action result": parse_sft_action_result,
    "ssm plugin output": split_plugin_output,
}
WORST_CASES = {
    "one 1 MB line": "A" * MEGABYTE,
    "one 1 MB line of spaces between markers": "SFT_STATUS=" + " " * MEGABYTE + "x",
    "a fact label 1 MB long": "(" + "a" * MEGABYTE + "): " + " " * 1000 + "x",
    "20,000 repeated report headers": "===== QC report for web01 =====\n" * 20_000,
    "20,000 summary blocks": f"{SUMMARY_BEGIN}\nSUMMARY_VERSION=1\n{SUMMARY_END}\n" * 20_000,
    "20,000 file markers": "----- BEGIN CLOUDOPS FILE qc_report.txt -----\n" * 20_000,
    "200 KB of NUL and controls": "\x00\x1b[\r\x85\u2028" * 40_000,
    "an unterminated ANSI escape 1 MB long": "\x1b[" + "1;" * (MEGABYTE // 2),
    "100,000 error markers": f"{ERROR_MARKER}\n" * 100_000,
}
WORST_CASE_SECONDS = 5.0


@pytest.mark.parametrize("case", sorted(WORST_CASES))
def test_every_parser_answers_worst_case_output_quickly(case: str) -> None:
    text = WORST_CASES[case]
    for name, parse in PARSERS.items():
        started = time.perf_counter()
        parse(text)
        took = time.perf_counter() - started
        assert took < WORST_CASE_SECONDS, f"{name} took {took:.1f} s on {case}"


def test_change_file_and_kernel_checks_answer_huge_input_quickly() -> None:
    header = "change_number,instance_id,account_id,region\n"
    cases = [
        header + "CHG1,i-0123456789abcdef0,012345678901,us-east-1\n" * 20_000,
        header + "x," * MEGABYTE,
        '"' * MEGABYTE,
    ]
    for text in cases:
        started = time.perf_counter()
        try:
            parse_change_csv(text)
        except ChangeFileError as exc:
            assert exc.problems
        assert time.perf_counter() - started < WORST_CASE_SECONDS
    started = time.perf_counter()
    with pytest.raises(ValueError):
        validate_kernel_version("1." * MEGABYTE)
    sort_kernels(["1." * 50_000 + "-" + "a1" * 50_000, "4.18.0-553" + ".el8" * 50_000])
    assert time.perf_counter() - started < WORST_CASE_SECONDS


def test_a_qc_header_padded_with_spaces_and_no_closing_rule_does_not_hang() -> None:
    # The header pattern once backtracked cubically here (5,000 spaces: ~7 minutes); 200,000
    # spaces would not finish. No clock in the assertion: a regression hangs the run instead.
    report = parse_qc_report("===== QC report for " + " " * 200_000 + "web01\n(Current date): now")
    assert report.hostname is None
    assert not report.passed
