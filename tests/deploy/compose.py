"""docker-compose.yml as compose reads it, and what its `certs` service makes, for the deploy tests.

No docker engine here: the file is interpolated the way compose does (the subset of its syntax the
file uses), and the certs service's command, a `fairwatch` verb, is run for real with its paths
moved into a temporary directory; a volume ``tls-NAME`` becomes the directory ``ROOT/tls/NAME``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "fairwatch.env.example"
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$\$")
PASSWORDS = ("CLICKHOUSE_MIGRATOR_PASSWORD", "CLICKHOUSE_WRITER_PASSWORD", "CLICKHOUSE_READER_PASSWORD",
             "CLICKHOUSE_AUDITOR_PASSWORD", "ALERTMANAGER_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
# the uid and gid each image runs as (their Dockerfiles; fairwatch's: ours, USER 10001:10001)
IMAGE_USERS = {"apache/kafka": (1000, 1000), "clickhouse/clickhouse-server": (101, 101),
               "prom/alertmanager": (65534, 65534), "grafana/grafana": (472, 0), "fairwatch": (10001, 10001)}


def interpolate(node, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$ (the subset the file uses)."""
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise KeyError(f"{name}: {arg}")
        if op == ":-" and not value or op == "-" and value is None:
            return arg
        return value or ""

    return INTERPOLATION.sub(substitute, node)


def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {k: v for k, v in pairs}


def example_env() -> dict[str, str]:
    """The example env file with a password of its own for each secret."""
    return {**env_example(), **{name: f"t3st-{name.lower().replace('_', '-')}-0123456789" for name in PASSWORDS}}


def load(env: dict[str, str] | None = None) -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), example_env() if env is None else env)


def image_user(service: dict) -> tuple[int, int]:
    image = service["image"].split(":")[0]
    return IMAGE_USERS["fairwatch" if image.startswith("${") or "fairwatch" in image else image]


def tls_mounts(service: dict) -> dict[str, str]:
    """The service's tls-* volumes: bundle name -> where the container sees it."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("tls-"):
            out[source[len("tls-"):]] = target
    return out


def host_path(root: Path, service: dict, container_path: str) -> Path | None:
    """Where ``container_path`` of ``service`` lies under ``root`` (a tls-* volume's file), or None."""
    for bundle, target in tls_mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return root / "tls" / bundle / os.path.relpath(container_path, target)
    return None


def certs_command(compose: dict, root: Path, mounts_here: bool = False, owners: bool = True) -> list[str]:
    """The certs service's command with its volumes' paths under ``root``. ``mounts_here``: the
    web config names the files where they are here (to start a server on them), not where the
    service's container would see them. ``owners=False`` leaves out --owner (only root may chown)."""
    certs = compose["services"]["certs"]
    places = {target: root / ("ca" if source == "tls-ca" else f"tls/{source[len('tls-'):]}")
              for source, target, *_ in (v.split(":") for v in certs["volumes"])}
    args = []
    for arg in certs["command"]:
        for option in ("--dir=", "--ca-dir="):
            if arg.startswith(option):
                path = arg[len(option):]
                arg = option + str(places.get(path, root / path.lstrip("/")))
        if arg.startswith("--mount=") and mounts_here:
            bundle = arg[len("--mount="):].split("=", 1)[0]
            arg = f"--mount={bundle}={root / 'tls' / bundle}"
        if arg.startswith("--owner=") and not owners:
            continue
        args.append(arg)
    return args


def run_certs(compose: dict, root: Path, mounts_here: bool = False) -> subprocess.CompletedProcess:
    """Run the certs service's command (`fairwatch ...`) with its environment, as its container would."""
    certs = compose["services"]["certs"]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "streams"), **certs["environment"]}
    return subprocess.run([sys.executable, "-m", "fairwatch.cli",
                           *certs_command(compose, root, mounts_here, owners=os.geteuid() == 0)],
                          env=env, capture_output=True, text=True, timeout=120)
