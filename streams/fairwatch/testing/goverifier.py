"""The Go verifier of the evidence formats (``tests/go/evidencecheck``): built with the local Go
toolchain from Go's own ``sumdb/note`` and ``sumdb/tlog``, it checks what fairwatch's Python code
signs and proves against an implementation that shares none of it. A missing ``go`` is an error:
the tests that need it never skip."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from fairwatch.testing.stack import REPO

SOURCE = REPO / "tests" / "go" / "evidencecheck"
_GO_FALLBACK = "/usr/local/go/bin/go"  # the official tarball's place, when not on PATH


def _go() -> str:
    go = shutil.which("go") or (_GO_FALLBACK if os.access(_GO_FALLBACK, os.X_OK) else None)
    if go is None:
        raise RuntimeError("go is not installed (not on PATH nor at /usr/local/go/bin/go): the Go verifier "
                           "tests need it (https://go.dev/dl/)")
    return go


@functools.cache
def build_evidencecheck() -> Path:
    """The built verifier, from the cache when its sources and the Go version have not changed
    (``$FAIRWATCH_CACHE``, default ``~/.cache/fairwatch``, where the project keeps its tools)."""
    go = _go()
    # the installed toolchain, never a downloaded one; modules from the proxy, checked against go.sum
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True, env=env).stdout
    digest = hashlib.sha256(version.encode())
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    cache = Path(os.path.expanduser(os.environ.get("FAIRWATCH_CACHE") or "~/.cache/fairwatch")) / "evidencecheck"
    binary = cache / digest.hexdigest()[:16] / "evidencecheck"
    binary.parent.mkdir(parents=True, exist_ok=True)
    with open(binary.parent / "build.lock", "w") as lock:  # parallel test workers: one build
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            partial = binary.with_suffix(".partial")  # a build cut short is never taken for a binary
            built = subprocess.run([go, "build", "-buildvcs=false", "-trimpath", "-o", str(partial), "."],
                                   cwd=SOURCE, capture_output=True, text=True, env=env, timeout=600)
            if built.returncode != 0:
                raise RuntimeError(f"go build of {SOURCE} failed:\n{built.stderr}")
            partial.replace(binary)
    return binary


def run_evidencecheck(command: str, payload: dict) -> tuple[bool, str]:
    """Run one check: ``(True, what it printed)`` when Go accepts, ``(False, its reason)`` when it
    rejects. Anything else (a crash, a timeout) raises: it is not a rejection."""
    done = subprocess.run([str(build_evidencecheck()), command], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=60)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"evidencecheck {command} exited {done.returncode}: {done.stderr.strip()}")
    return done.returncode == 0, (done.stdout if done.returncode == 0 else done.stderr.strip())
