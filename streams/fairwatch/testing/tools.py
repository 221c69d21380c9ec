"""Debian tools some tests need (headless Chromium, poppler's pdftoppm), installed with apt when
missing: a test that needs one never skips."""

from __future__ import annotations

import os
import shutil
import subprocess


def debian_tool(binary: str, package: str) -> str:
    """Path of ``binary``, installing Debian ``package`` first if it is not on PATH."""
    found = shutil.which(binary)
    if found is None:
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env, capture_output=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", package], check=True,
                       env=env, capture_output=True)
        found = shutil.which(binary)
    assert found, f"{binary} is not installed and apt-get did not install {package}"
    return found


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
