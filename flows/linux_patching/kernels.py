"""Linux kernel versions: how to name, order and group them for patching.

Kernel versions come from three places that spell them differently: ``uname -r``
(``4.18.0-553.5.1.el8_10.x86_64``), yum/dnf listings (``kernel.x86_64 4.18.0-553.45.1.el8_10``)
and apt package names (``linux-image-5.15.0-105-generic``). ``normalize_kernel`` brings them to
one spelling, ``kernel_sort_key`` orders them the way rpm does (segment by segment, numbers as
numbers) so that ``553.45.1`` sorts after ``553.5.1``, and ``base_kernel`` with
``kernel_group_name`` names the group of servers one kernel is chosen for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

_PACKAGE_PREFIX = re.compile(r"^(?:kernel-core-|kernel-|linux-image-unsigned-|linux-image-)")
_EPOCH = re.compile(r"^\d+:")
_ARCH_SUFFIX = re.compile(r"\.(?:x86_64|aarch64|noarch|i686)$")
_SEGMENT = re.compile(r"[0-9]+|[A-Za-z]+")
_LEADING_NUMBER = re.compile(r"\d+")

# A version that is safe to place in a script and in a file name: it starts like a kernel
# version (two dotted numbers) and holds no quote, `$`, backtick, `;`, `/`, space or other
# character a shell or a path would treat specially.
_KERNEL_VERSION = re.compile(r"[0-9]+\.[0-9]+[A-Za-z0-9._+~-]*")
MAX_KERNEL_VERSION_LENGTH = 128

_EL_SUFFIX = re.compile(r"\.el(?P<major>\d+)(?:_(?P<minor>\d+))?(?=[._]|$)")
_AMAZON_SUFFIX = re.compile(r"\.amzn(?P<release>2023|2)(?=[._]|$)")
# Ubuntu kernels end in a flavour after the ABI number: 5.15.0-105-generic, 5.15.0-1050-aws.
_UBUNTU_KERNEL = re.compile(
    r"^\d+\.\d+\.\d+-\d+-(?:generic|lowlatency|aws|azure|gcp|gke|kvm|oracle|ibm|oem|nvidia)"
    r"(?:-[a-z0-9]+)*$"
)
# Debian kernels end in an architecture flavour: 6.1.0-18-amd64, 6.1.0-18-cloud-amd64.
_DEBIAN_KERNEL = re.compile(r"^\d+\.\d+\.\d+-\d+-(?:[a-z]+-)?(?:amd64|arm64|686|686-pae)$")

UBUNTU_RELEASES: dict[str, str] = {
    "xenial": "16.04",
    "bionic": "18.04",
    "focal": "20.04",
    "jammy": "22.04",
    "noble": "24.04",
}
DEBIAN_RELEASES: dict[str, str] = {
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
}

UNKNOWN_DISTRO = "Unknown"


def normalize_kernel(text: str) -> str:
    """One spelling for a kernel version, whatever listed it.

    Strips surrounding whitespace, the ``kernel-``, ``kernel-core-`` and ``linux-image-`` package
    prefixes, an rpm epoch (``0:``) and the ``.x86_64``/``.aarch64``/``.noarch``/``.i686``
    architecture suffix:
    ``kernel-core-4.18.0-553.45.1.el8_10.x86_64`` -> ``4.18.0-553.45.1.el8_10``.
    """
    value = text.strip()
    value = _PACKAGE_PREFIX.sub("", value, count=1)
    value = _EPOCH.sub("", value, count=1)
    return _ARCH_SUFFIX.sub("", value, count=1)


_Segment = tuple[int, int, str]


def _segments(part: str) -> tuple[_Segment, ...]:
    # rpm's rule: a numeric segment is newer than an alphabetic one, and numbers compare as
    # numbers. A number is keyed by its length without leading zeros, then its digits, which
    # orders like int() without its limit on very long digit strings.
    keys: list[_Segment] = []
    for segment in _SEGMENT.findall(part):
        if segment[0].isdigit():
            digits = segment.lstrip("0")
            keys.append((1, len(digits), digits))
        else:
            keys.append((0, 0, segment))
    return tuple(keys)


def kernel_sort_key(kernel: str) -> tuple[tuple[_Segment, ...], tuple[_Segment, ...]]:
    """A key that orders kernel versions as rpm compares them, not as strings.

    Version (before the first ``-``) is compared first, then the release, each segment by
    segment: ``4.18.0-553.45.1.el8_10`` > ``4.18.0-553.5.1.el8_10`` and
    ``5.14.0-427.13.1`` < ``5.14.0-427.100.1``.
    """
    version, _, release = normalize_kernel(kernel).partition("-")
    return (_segments(version), _segments(release))


def sort_kernels(kernels: Iterable[str]) -> list[str]:
    """Distinct normalised kernel versions, oldest first."""
    distinct = {normalize_kernel(k) for k in kernels if normalize_kernel(k)}
    return sorted(distinct, key=lambda k: (kernel_sort_key(k), k))


class KernelComparison(StrEnum):
    """How a running kernel stands against the kernel a change staged."""

    SAME = "same"
    NEWER = "newer"  # a later build than staged: a repository moved on, or someone patched again
    OLDER = "older"  # the old kernel still runs, or the boot fell back


def compare_kernels(running: str, target: str) -> KernelComparison:
    """``running`` against ``target``, compared as rpm compares versions, whatever spelling
    (``kernel-`` prefix, arch suffix) either carries."""
    run, want = normalize_kernel(running), normalize_kernel(target)
    if run == want:
        return KernelComparison.SAME
    if (kernel_sort_key(run), run) > (kernel_sort_key(want), want):
        return KernelComparison.NEWER
    return KernelComparison.OLDER


def newer_than_staged(running: str, target: str) -> str:
    """How a person reads a kernel newer than the staged one: ``newer than staged (X > Y)``."""
    return f"newer than staged ({normalize_kernel(running)} > {normalize_kernel(target)})"


def base_kernel(kernel: str) -> str:
    """The upstream version and the distribution's build number: ``4.18.0-553.45.1.el8_10`` ->
    ``4.18.0-553``. Servers on the same base kernel are patched as one group."""
    value = normalize_kernel(kernel)
    version, separator, release = value.partition("-")
    if not separator:
        return value
    build = _LEADING_NUMBER.match(release)
    return f"{version}-{build.group()}" if build else version


def validate_kernel_version(text: str) -> str:
    """The normalised kernel version, or ``ValueError`` if it is not a plausible one.

    Meant for the kernel a person or a flow parameter asks to stage: it will be written into a
    script, so anything beyond letters, digits and ``. _ + ~ -`` (quotes, ``$``, backticks,
    ``;``, spaces, slashes) is refused.
    """
    if not isinstance(text, str):
        raise ValueError(f"kernel version must be text, got {type(text).__name__}")
    value = normalize_kernel(text)
    if len(value) > MAX_KERNEL_VERSION_LENGTH or not _KERNEL_VERSION.fullmatch(value):
        raise ValueError(
            f"{text!r} is not a kernel version: expected something like 4.18.0-553.45.1.el8_10 "
            "or 5.15.0-105-generic (digits and dots first, then only letters, digits and "
            ". _ + ~ -). Pick one of the versions listed for the kernel group."
        )
    return value


def distro_from_kernel(kernel: str, codename: str | None = None) -> str | None:
    """The distribution a kernel version was built for, when its suffix says so.

    ``.el8_10`` -> ``RHEL8.10``, ``.el9`` -> ``RHEL9``, ``.amzn2`` -> ``AL2``, ``.amzn2023`` ->
    ``AL2023``. Ubuntu and Debian kernels carry no release in their version, so their release is
    taken from an apt suite ``codename`` (``jammy`` -> ``Ubuntu22.04``) when one is known, and
    is otherwise left out (``Ubuntu``). ``None`` when the suffix names no distribution.
    """
    value = normalize_kernel(kernel)
    el = _EL_SUFFIX.search(value)
    if el:
        minor = el.group("minor")
        return f"RHEL{el.group('major')}" + (f".{minor}" if minor else "")
    amazon = _AMAZON_SUFFIX.search(value)
    if amazon:
        return f"AL{amazon.group('release')}"
    if _UBUNTU_KERNEL.match(value):
        return "Ubuntu" + UBUNTU_RELEASES.get(codename or "", "")
    if _DEBIAN_KERNEL.match(value):
        return "Debian" + DEBIAN_RELEASES.get(codename or "", "")
    return None


def read_staged_kernel(patchme: str) -> str | None:
    """The kernel a staged ``patchme.sh`` installs, from its ``newkernel="..."`` line."""
    match = re.search(r'^newkernel="([^"\n]*)"\s*$', patchme, re.MULTILINE)
    return match.group(1) if match else None


def kernel_group_name(distro: str, base: str) -> str:
    """The name operators read for a group: ``RHEL8.10 - Kernel 4.18.0-553``."""
    return f"{distro} - Kernel {base}"
