"""mkdocs hook: the pages that are generated at every build, so they never go stale.

* ``reference/configuration.md`` from the settings' own definitions
  (:data:`fairwatch.stream.worker_settings.WORKER_ENVIRONMENT` and ``OTHER_ENVIRONMENT``);
* ``api/...`` one page per module of the ``fairwatch`` package, found by walking
  ``streams/fairwatch`` (``fairwatch.testing`` and ``__main__`` modules are left out), and the
  "API reference" section of the nav built from the same walk.

A module renamed, added or removed changes the pages and the nav at the next build; nothing here
names a module. ``configuration_markdown()`` is also what tests/deploy/test_deploy.py reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO / "streams"
PACKAGE = "fairwatch"
API_DIR = "api"
CONFIG_PAGE = "reference/configuration.md"
NAV_TITLE = "API reference"
LEFT_OUT = ("fairwatch.testing",)  # test helpers: not part of the documented API
# nav order of the subpackages, the way data flows; a name not listed goes last, alphabetically
FLOW = ("contracts", "core", "store", "detect", "audit", "stream", "sim", "cli", "producer")

# The local stack's variables are read by scripts/stack (standard library only, outside the
# package); this table mirrors its usage text.
STACK_ENVIRONMENT: dict[str, tuple[str, str]] = {
    "FAIRWATCH_STACK_DIR": ("~/.cache/fairwatch/stack", "state, data and logs of the local stack"),
    "FAIRWATCH_CACHE": ("~/.cache/fairwatch", "downloaded Kafka jars"),
    "FAIRWATCH_KAFKA_PORT": ("19092", "local Kafka port"),
    "FAIRWATCH_KAFKA_CONTROLLER_PORT": ("19093", "local Kafka controller port"),
    "FAIRWATCH_KAFKA_MTLS_PORT": ("19095", "local Kafka port for clients with a certificate (mutual TLS)"),
    "FAIRWATCH_CLICKHOUSE_PORT": ("19000", "local ClickHouse port (native protocol)"),
    "FAIRWATCH_CLICKHOUSE_HTTP_PORT": ("18123", "local ClickHouse HTTP port"),
    "FAIRWATCH_ALERTMANAGER_PORT": ("19094", "local Alertmanager port"),
    "FAIRWATCH_KAFKA_VERSION": ("4.1.1", "Kafka release from Maven Central"),
    "FAIRWATCH_KAFKA_HEAP": ("512m", "Kafka broker heap"),
    "FAIRWATCH_STACK_TIMEOUT": ("120", "seconds `scripts/stack up` waits for each service"),
    "FAIRWATCH_NO_SERVICES": ("", "when set, `scripts/stack up` and `install` refuse (`make test-fast` sets it)"),
    "FAIRWATCH_STACK_INSECURE": ("", "when set (not 0): plaintext links and no passwords, with a warning at every start"),
    "FAIRWATCH_CLUSTER_DIR": ("~/.cache/fairwatch/cluster", "state, data and logs of the cluster (`scripts/stack up --cluster`)"),
    "FAIRWATCH_CLUSTER_PORT_BASE": ("29000", "the cluster's ports: ClickHouse nodes from base+100, ZooKeeper base+181, Kafka brokers from base+200"),
    "FAIRWATCH_ZOOKEEPER_VERSION": ("3.9.5", "ZooKeeper release from Maven Central (the cluster's)"),
}
# What `scripts/stack up` prints (export lines), and what only the test helpers read.
STACK_OUTPUT: dict[str, str] = {
    "FAIRWATCH_KAFKA": "Kafka bootstrap servers of the local stack (SASL_SSL)",
    "FAIRWATCH_KAFKA_MTLS": "the same broker's mutual-TLS listener (a client certificate is the credential)",
    "FAIRWATCH_KAFKA_PRODUCER_CERT_FILE": "the stack's client certificate for the producer (CN=producer)",
    "FAIRWATCH_KAFKA_PRODUCER_KEY_FILE": "its private key (0600)",
    "FAIRWATCH_CLICKHOUSE": "the local ClickHouse server as the `writer` (the workers' user), native protocol over TLS",
    "FAIRWATCH_CLICKHOUSE_MIGRATOR": "the same server as the `migrator` (DDL: `fairwatch migrate`)",
    "FAIRWATCH_CLICKHOUSE_READER": "the same server as the `reader` (boards: SELECT only)",
    "FAIRWATCH_CLICKHOUSE_AUDITOR": "the same server as the `auditor` (reports, metrics, verify: SELECT only)",
    "FAIRWATCH_CLICKHOUSE_HTTP": "the local ClickHouse server's HTTPS URL",
    "FAIRWATCH_CLICKHOUSE_CA_FILE": "the local stack's CA certificate (every TLS link of the stack)",
    "FAIRWATCH_ALERTMANAGER": "the local Alertmanager's base URL (https)",
    "FAIRWATCH_ALERTMANAGER_USERNAME": "Alertmanager basic-auth user",
    "FAIRWATCH_ALERTMANAGER_PASSWORD_FILE": "file holding that user's password (0600)",
    "FAIRWATCH_ALERTMANAGER_CA_FILE": "CA that Alertmanager's certificate is checked against",
}
# What `scripts/stack up --cluster` prints besides the single stack's names with FAIRWATCH_CLUSTER_ for
# FAIRWATCH_ (FAIRWATCH_CLUSTER_KAFKA, FAIRWATCH_CLUSTER_CLICKHOUSE, ...; no Alertmanager).
CLUSTER_OUTPUT: dict[str, str] = {
    "FAIRWATCH_CLUSTER_CLICKHOUSE_MIGRATOR": "the ClickHouse cluster as the `migrator`, with `cluster=fairwatch` (set, with "
                                             "`FAIRWATCH_CLUSTER_CLICKHOUSE_NODES`, the cluster tests use an external cluster)",
    "FAIRWATCH_CLUSTER_CLICKHOUSE_NODES": "each ClickHouse node's own address (host:port, comma-separated)",
    "FAIRWATCH_CLUSTER_ZOOKEEPER": "the cluster's ZooKeeper (loopback, plaintext)",
}
TEST_ENVIRONMENT: dict[str, tuple[str, str]] = {
    "FAIRWATCH_TEST_LOGLEVEL": ("warn", "log level of the workers the tests start (`fairwatch worker --loglevel`)"),
}


def _import_settings():
    if str(PACKAGE_ROOT) not in sys.path:
        sys.path.insert(0, str(PACKAGE_ROOT))
    from fairwatch.stream import worker_settings

    return worker_settings


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(default: str | None) -> str:
    if default is None:
        return "required"
    if default == "":
        return "(none)"
    return f"`{default}`"


def configuration_markdown() -> str:
    """The configuration reference page, from the settings' own definitions."""
    settings = _import_settings()
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated at build time by docs/hooks/generate.py from "
        "fairwatch.stream.worker_settings: do not edit. -->",
        "",
        "Every setting is an environment variable. This page is generated at every docs build from "
        "the definitions the code reads (`fairwatch.stream.worker_settings`), so it cannot disagree "
        "with them.",
        "",
        "## Worker settings",
        "",
        "Read by `fairwatch worker` (`WORKER_ENVIRONMENT`). Each is a value of the Helm chart "
        "(`kafka.*`, `worker.*`) and can be set in docker-compose (see [deployment](../deployment.md)).",
        "",
        "| variable | meaning | default |",
        "|---|---|---|",
    ]
    for name, (default, meaning) in settings.WORKER_ENVIRONMENT.items():
        lines.append(f"| `{name}` | {_cell(meaning)} | {_default(default)} |")
    lines += [
        "",
        "## Read by other commands, or set by the image",
        "",
        "`OTHER_ENVIRONMENT`: who reads each variable and what it means.",
        "",
        "| variable | read by, and meaning |",
        "|---|---|",
    ]
    for name, meaning in settings.OTHER_ENVIRONMENT.items():
        lines.append(f"| `{name}` | {_cell(meaning)} |")
    lines += [
        "",
        "## The local stack",
        "",
        "Read by `scripts/stack` (see [the local stack](../stack.md)).",
        "",
        "| variable | meaning | default |",
        "|---|---|---|",
    ]
    for name, (default, meaning) in STACK_ENVIRONMENT.items():
        lines.append(f"| `{name}` | {_cell(meaning)} | {_default(default)} |")
    lines += [
        "",
        "`eval \"$(scripts/stack up)\"` sets these (and they are the defaults of the variables above "
        "when the stack runs):",
        "",
        "| variable | value |",
        "|---|---|",
    ]
    for name, meaning in STACK_OUTPUT.items():
        lines.append(f"| `{name}` | {_cell(meaning)} |")
    lines += [
        "",
        "`eval \"$(scripts/stack up --cluster)\"` sets the same names with `FAIRWATCH_CLUSTER_` for `FAIRWATCH_` "
        "(every broker in `FAIRWATCH_CLUSTER_KAFKA`; no Alertmanager), and:",
        "",
        "| variable | value |",
        "|---|---|",
    ]
    for name, meaning in CLUSTER_OUTPUT.items():
        lines.append(f"| `{name}` | {_cell(meaning)} |")
    lines += [
        "",
        "## Tests",
        "",
        "| variable | meaning | default |",
        "|---|---|---|",
    ]
    for name, (default, meaning) in TEST_ENVIRONMENT.items():
        lines.append(f"| `{name}` | {_cell(meaning)} | {_default(default)} |")
    return "\n".join(lines) + "\n"


def modules() -> list[str]:
    """Every documented module and package of ``fairwatch``, by walking the source tree."""
    found = []
    for path in sorted((PACKAGE_ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
        if parts[-1] == "__main__" or any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if any(name == o or name.startswith(o + ".") for o in LEFT_OUT):
            continue
        found.append(name)
    return sorted(found)


def _is_package(name: str) -> bool:
    return (PACKAGE_ROOT.joinpath(*name.split(".")) / "__init__.py").is_file()


def api_page(name: str) -> str:
    """Where a module's page goes: fairwatch.core.join -> api/core/join.md, a package -> .../index.md."""
    parts = name.split(".")[1:]
    if _is_package(name):
        return "/".join([API_DIR, *parts, "index.md"])
    return "/".join([API_DIR, *parts]) + ".md"


def api_markdown(name: str) -> str:
    options = ["    options:", "      show_root_heading: true", "      show_root_full_path: true"]
    if _is_package(name):
        # a package's page shows its docstring and what it defines itself; each module has its own page
        options.append("      show_submodules: false")
    return f"# `{name}`\n\n::: {name}\n" + "\n".join(options) + "\n"


def api_nav() -> list:
    """The nav of the API section: one entry per top-level module, a section per subpackage."""
    names = modules()

    def children(parent: str) -> list:
        entries = []
        for name in names:
            if name.rpartition(".")[0] != parent:
                continue
            if _is_package(name):
                entries.append({name.rpartition(".")[2]: [{"Overview": api_page(name)}, *children(name)]})
            else:
                entries.append({name.rpartition(".")[2]: api_page(name)})
        return entries

    def order(entry: dict) -> tuple:
        short = next(iter(entry))
        return (FLOW.index(short) if short in FLOW else len(FLOW), short)

    return [{PACKAGE: api_page(PACKAGE)}, *sorted(children(PACKAGE), key=order)]


# --- mkdocs hooks ---------------------------------------------------------------------------------

def _replace_api_nav(nav: list) -> bool:
    for i, item in enumerate(nav):
        if isinstance(item, dict) and NAV_TITLE in item:
            nav[i] = {NAV_TITLE: api_nav()}
            return True
        if isinstance(item, dict):
            for value in item.values():
                if isinstance(value, list) and _replace_api_nav(value):
                    return True
    return False


def on_config(config):
    if config.nav is not None and not _replace_api_nav(config.nav):
        raise ValueError(f"mkdocs.yml nav has no {NAV_TITLE!r} entry for the generated API pages")
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, CONFIG_PAGE, content=configuration_markdown()))
    for name in modules():
        files.append(File.generated(config, api_page(name), content=api_markdown(name)))
    return files
