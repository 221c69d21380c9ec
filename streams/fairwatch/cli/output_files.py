"""Writing a file the user named with ``--out``: never through a symlink, never over an existing
file unless ``--force``, readable by owner and group only (0640): a report holds per-group error
rates of people, and a planted symlink must not turn a report run into an overwrite elsewhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

MODE = 0o640


class OutputError(OSError):
    """The output file was refused; the message says why and what to do."""


def write_output(path: Path, data: bytes, force: bool = False) -> None:
    with open_output(path, force) as handle:
        handle.write(data)


def open_output(path: Path, force: bool = False, option: str = "--out") -> BinaryIO:
    """The file opened for writing by the rules above, for output written as it is made;
    ``option`` is the flag that named it, for the message."""
    if path.is_symlink():
        raise OutputError(f"{option} {path} is a symbolic link: name the file itself")
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_TRUNC if force else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, MODE)
    except FileExistsError:
        raise OutputError(f"{option} {path} exists: add --force to replace it, or write elsewhere") from None
    os.fchmod(descriptor, MODE)  # a replaced file keeps its old mode otherwise
    return os.fdopen(descriptor, "wb")
