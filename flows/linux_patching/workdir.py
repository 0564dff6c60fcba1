"""The work directory on each server that holds a change's folder (``<workdir>/<CHANGE>``).

Prep writes its QC report and ``patchme.sh`` there, the patch window and post read them back,
so every Linux patching flow checks the directory it is given by the same rule, the rule the
scripts enforce again on the server. There they also refuse a work directory that is a link,
belongs to another user or is writable by every user (``scripts/linux/lib/change_folder.sh``):
root's own directories (``/root``, or one made for it such as ``/opt/patching``) are the
places for it, never a shared temporary directory.
"""

from __future__ import annotations

import re

_WORKDIR = re.compile(r"/[A-Za-z0-9._/-]{0,200}")


def check_workdir(workdir: str) -> str | None:
    """Why ``workdir`` cannot be the directory that holds the change folder, or None."""
    if not isinstance(workdir, str) or not _WORKDIR.fullmatch(workdir):
        return (
            f"workdir {workdir!r} must be an absolute path of letters, digits, '.', '_', '-' "
            "and '/' (at most 200 characters), such as /root or /opt/patching: a directory of "
            "root's, which no other user can write"
        )
    if ".." in workdir.split("/"):
        return f"workdir {workdir!r} must not contain '..'"
    return None
