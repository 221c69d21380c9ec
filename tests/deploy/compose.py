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


# --- override files (docker compose -f docker-compose.yml -f deploy/NAME.yml) ---------------------

EXTERNAL_CLUSTERS = REPO / "deploy" / "external-clusters.yml"


class _Override:
    """A value tagged ``!override``: it replaces the base file's instead of merging with it."""

    def __init__(self, value):
        self.value = value


class _OverrideLoader(yaml.SafeLoader):
    pass


def _construct_override(loader, node):
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    return _Override(loader.construct_scalar(node))


_OverrideLoader.add_constructor("!override", _construct_override)


def _plain(node):
    if isinstance(node, _Override):
        return _plain(node.value)
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def merge(base, override, path: str = ""):
    """Compose's merge of an override file into the model (the part of it the override files use):
    mappings merge key by key, ``!override`` replaces, scalars replace. Compose replaces some
    sequences (command, entrypoint) and appends or merges others by key; an override file here must
    say ``!override`` on every sequence, so that none is ambiguous."""
    if isinstance(override, _Override):
        return _plain(override)
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value, f"{path}.{key}") if key in base else _plain(value)
        return out
    if isinstance(override, list):
        raise ValueError(f"{path}: a sequence merged into the base one; tag it !override")
    return override


def load_with(override: Path, env: dict[str, str]) -> dict:
    """docker-compose.yml with ``override`` merged in, then interpolated with ``env``."""
    base = yaml.safe_load(COMPOSE.read_text())
    extra = yaml.load(override.read_text(), Loader=_OverrideLoader)  # noqa: S506 - a SafeLoader subclass
    return interpolate(merge(base, {k: v for k, v in extra.items() if not k.startswith("x-")}), env)


def started_by_default(model: dict) -> dict[str, dict]:
    """The services `docker compose up` starts without --profile."""
    return {name: s for name, s in model["services"].items() if not s.get("profiles")}


def external_mounts(service: dict) -> dict[str, Path]:
    """The service's bind mounts: where the container sees them -> host directory."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith(("/", ".")):
            out[target] = Path(source)
    return out


def moved_env(service: dict) -> dict[str, str]:
    """The service's environment with paths under its bind mounts moved to the host directories."""
    mounts = external_mounts(service)
    env = {}
    for name, value in service["environment"].items():
        value = str(value)
        for target, source in mounts.items():
            value = value.replace(target.rstrip("/") + "/", str(source) + "/")
        env[name] = value
    return env


def external_clusters_from(stack: dict[str, str], secrets: Path, database: str) -> dict[str, str]:
    """The external-clusters settings of the env file for a running cluster (the local one, under the
    single stack's names: fairwatch.testing.stack.cluster_as_stack), its credentials copied into the
    per-role directories of ``secrets`` as an operator would put them there."""
    import shutil
    from urllib.parse import parse_qs, urlparse

    writer, migrator = (urlparse(stack[k]) for k in ("FAIRWATCH_CLICKHOUSE", "FAIRWATCH_CLICKHOUSE_MIGRATOR"))
    kafka_password = {"admin": stack["FAIRWATCH_KAFKA_PASSWORD_FILE"],
                      "worker": stack["FAIRWATCH_KAFKA_WORKER_PASSWORD_FILE"],
                      "producer": stack["FAIRWATCH_KAFKA_PRODUCER_PASSWORD_FILE"]}
    clickhouse_password = {role: parse_qs(url.query)["password_file"][0]
                           for role, url in (("worker", writer), ("sealer", writer), ("migrator", migrator))}
    cas = {stack["FAIRWATCH_KAFKA_CA_FILE"], parse_qs(writer.query)["ca_certs"][0]}
    for role in ("admin", "worker", "producer", "migrator", "sealer"):
        directory = secrets / role
        directory.mkdir(parents=True, mode=0o700)
        (directory / "ca.pem").write_text("".join(Path(ca).read_text() for ca in sorted(cas)))
        for name, sources in (("kafka-password", kafka_password), ("clickhouse-password", clickhouse_password)):
            if role in sources:
                shutil.copyfile(sources[role], directory / name)
                (directory / name).chmod(0o600)
    return {
        "FAIRWATCH_EXTERNAL_KAFKA": stack["FAIRWATCH_KAFKA"],
        "FAIRWATCH_EXTERNAL_KAFKA_SASL_MECHANISM": stack["FAIRWATCH_KAFKA_SASL_MECHANISM"],
        "FAIRWATCH_EXTERNAL_KAFKA_ADMIN_USER": stack["FAIRWATCH_KAFKA_USERNAME"],
        "FAIRWATCH_EXTERNAL_KAFKA_WORKER_USER": stack["FAIRWATCH_KAFKA_WORKER_USERNAME"],
        "FAIRWATCH_EXTERNAL_KAFKA_PRODUCER_USER": stack["FAIRWATCH_KAFKA_PRODUCER_USERNAME"],
        "FAIRWATCH_EXTERNAL_CLICKHOUSE_HOST": writer.hostname,
        "FAIRWATCH_EXTERNAL_CLICKHOUSE_PORT": str(writer.port),
        "FAIRWATCH_EXTERNAL_CLICKHOUSE_DATABASE": database,
        "FAIRWATCH_EXTERNAL_CLICKHOUSE_CLUSTER": parse_qs(writer.query)["cluster"][0],
        "FAIRWATCH_EXTERNAL_CLICKHOUSE_WRITER_USER": writer.username,
        "FAIRWATCH_EXTERNAL_CLICKHOUSE_MIGRATOR_USER": migrator.username,
        "FAIRWATCH_EXTERNAL_SECRETS": str(secrets),
    }


def run_service(model: dict, name: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A one-shot fairwatch service of ``model`` (its command and environment, its bind mounts'
    paths moved to the host directories) run here as its container would run it."""
    service = model["services"][name]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": str(REPO / "streams"),
           **moved_env(service), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "fairwatch.cli", *service["command"]], env=env,
                          capture_output=True, text=True, timeout=300)
