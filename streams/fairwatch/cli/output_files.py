"""Writing a file the user named with ``--out``: never through a symlink, never over an existing
file unless ``--force``, readable by owner and group only (0640): a report holds per-group error
rates of people, and a planted symlink must not turn a report run into an overwrite elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

MODE = 0o640


class OutputError(OSError):
    """The output file was refused; the message says why and what to do."""


def write_output(path: Path, data: bytes, force: bool = False) -> None:
    if path.is_symlink():
        raise OutputError(f"--out {path} is a symbolic link: name the file itself")
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_TRUNC if force else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, MODE)
    except FileExistsError:
        raise OutputError(f"--out {path} exists: add --force to replace it, or write elsewhere") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, MODE)  # a replaced file keeps its old mode otherwise
