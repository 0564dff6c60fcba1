"""Directories and files only the worker's own user may read: the data directory, the record
store's SQLite files and the report files hold every script's output.

Modes are given to each ``mkdir``/``open`` rather than set with ``os.umask``: the umask is one
per process, and Prefect runs tasks in threads, so changing it around one creation would
change it for every other thread's files too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def private_directory(path: Path) -> Path:
    """``path`` as a directory only its owner may enter: created with its missing parents
    (each 0700), or tightened to 0700 when it exists, belongs to this user and is looser."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        # One made by another process a moment ago is fine: tightened below if it is ours.
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIRECTORY)
    tighten(path, PRIVATE_DIRECTORY)
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it if it does."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        if path.is_file():  # not a directory of that name, which the caller will refuse
            tighten(path, PRIVATE_FILE)
    else:
        os.close(descriptor)


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` with mode 0600, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, PRIVATE_FILE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        # A file that existed keeps its old mode through O_CREAT: set it on what was opened.
        os.fchmod(file.fileno(), PRIVATE_FILE)
        file.write(text)


def tighten(path: Path, mode: int) -> None:
    """Take the group and other permissions off ``path`` when it belongs to this user.

    Someone else's file is left alone: it is theirs to set, and chmod would fail anyway.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return
    if stat.S_IMODE(info.st_mode) & ~mode:
        os.chmod(path, mode)
