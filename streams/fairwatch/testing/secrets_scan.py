"""After a test run: did any secret of the local stack reach an output?

Outputs are the text the tests captured (stdout, stderr and logs of every test, passed or not) and
every file the run left that others may read (worker logs, demo output, reports, the stack's logs).
A file only its owner may read (0600, like the stack's password files and the demo's
clickhouse-client config) is a place a secret is meant to be, not a leak.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

CHUNK = 8 << 20  # files are read in chunks that overlap by a secret's length: none is too large
SKIPPED_DIRS = {"data", "store", "chdb", "rocksdb", "metadata", "tmp", "tables"}  # stores, not output


def stack_secrets(stack_dir: Path | None) -> dict[str, str]:
    """The local stack's passwords, by file name (empty without a local, secured stack)."""
    if stack_dir is None or not (stack_dir / "secrets").is_dir():
        return {}
    out = {}
    for path in (stack_dir / "secrets").iterdir():
        if path.is_file() and not path.name.endswith(".bcrypt"):
            value = path.read_text().strip()
            if len(value) >= 16:  # a short value could match by chance
                out[path.name] = value
    return out


def _readable_by_others(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)


def _names_in(path: Path, needles: dict[str, bytes]) -> set[str]:
    overlap = max(len(n) for n in needles.values())
    names, tail = set(), b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            window = tail + chunk
            names |= {name for name, needle in needles.items() if needle in window}
            tail = window[-overlap:]
    return names


def find_leaks(secrets: dict[str, str], roots: Iterable[Path], texts: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Where each secret appears: ``"<secret name> in <place>"``, one line per finding."""
    if not secrets:
        return []
    found = []
    needles = {name: value.encode() for name, value in secrets.items()}
    for where, text in texts:
        found += [f"{name} in {where}" for name, value in secrets.items() if value in text]
    for root in roots:
        if not root.exists():
            continue
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith(".")]
            for file in files:
                path = Path(directory) / file
                try:
                    if not path.is_file() or path.is_symlink() or not _readable_by_others(path):
                        continue
                    found += [f"{name} in {path}" for name in _names_in(path, needles)]
                except OSError:
                    continue
    return list(dict.fromkeys(found))  # a test's output is in its call and teardown reports alike
