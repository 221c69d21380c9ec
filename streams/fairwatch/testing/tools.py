"""Debian tools some tests need (headless Chromium, poppler's pdftoppm), installed with apt when
missing: a test that needs one never skips."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path


def debian_tool(binary: str, package: str) -> str:
    """Path of ``binary``, installing Debian ``package`` first if it is not on PATH."""
    found = shutil.which(binary)
    if found is None:
        lock_path = Path(os.environ.get("FAIRWATCH_CACHE", Path.home() / ".cache" / "fairwatch")) / "apt.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:  # parallel test workers: one apt-get at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            found = shutil.which(binary) or _apt_install(binary, package)
    assert found, f"{binary} is not installed and apt-get did not install {package}"
    return found


def _apt_install(binary: str, package: str) -> str | None:
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", package], check=True,
                   env=env, capture_output=True)
    return shutil.which(binary)


# Injected into a page before it loads: after load, a <pre id="render-check"> lists the images and
# whether each decoded, and every script or resource error the page raised.
RENDER_CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target && e.target.src)), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = JSON.stringify({images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt), errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def headless(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=120)
