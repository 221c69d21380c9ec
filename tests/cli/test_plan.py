"""`fairwatch plan`: the capacity model on the command line, and the docs' pasted runs of it."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from fairwatch.core.capacity import COEFFICIENTS, GiB
from fairwatch.testing.cli_runs import invoke, one_error, run_captured, single_error

SCALING = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
# the load of tests/core/test_capacity.py's small case, worked out by hand there
SMALL = ["--events-per-second", "100", "--sites", "2", "--groups", "9", "--retention-days", "10",
         "--verified-share", "0.5", "--label-delay-hours", "2", "--ttl-days", "1", "--worker-memory-gib", "1",
         "--node-disk-tib", "1"]


def pasted_runs() -> list[tuple[list[str], str]]:
    """Every ```text block of docs/scaling.md that starts with `$ fairwatch plan ...`: (args, output)."""
    blocks = re.findall(r"^```text\n\$ fairwatch (plan [^\n]*)\n(.*?)^```", SCALING.read_text(), re.S | re.M)
    return [(shlex.split(command), output) for command, output in blocks]


def test_the_docs_show_the_worked_example_as_the_command_prints_it_now():
    runs = pasted_runs()
    commands = [" ".join(args) for args, _ in runs]
    assert "plan --events-per-second 20000 --sites 100 --groups 200 --retention-days 730" in commands
    for args, output in runs:
        result = invoke(*args)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == output, f"docs/scaling.md's `fairwatch {' '.join(args)}` is stale"


def test_the_worked_example_names_every_coefficient_with_its_source():
    result = invoke("plan", "--events-per-second", "20000", "--sites", "100", "--groups", "200",
                    "--retention-days", "730")
    lines = result.stdout.splitlines()
    for name, coefficient in COEFFICIENTS.items():
        line = next(line for line in lines if line.strip().startswith(name + " "))
        assert coefficient.source in line and f"{coefficient.value:g}" in line, line
    # the defaults it kept are measured ones too, and say so
    assert any(line.strip().startswith("verified_share ") and "bench_capacity.py" in line for line in lines)


def test_a_plan_prints_each_figure_with_its_arithmetic():
    result = invoke("plan", *SMALL)
    assert result.exit_code == 0, result.stderr
    rows = {line[:27].strip(): line[27:].split() for line in result.stdout.splitlines()[3:20]}
    assert rows["workers"][:2] == ["2", "workers"]
    assert rows["partitions"][:2] == ["8", "partitions"]
    assert rows["join: ids held"][:2] == ["9,360,000", "ids"]
    assert rows["group_counts rows"][:2] == ["230,400", "rows/day"]
    assert rows["Kafka brokers"][:2] == ["3", "brokers"]
    assert rows["ClickHouse nodes"][:2] == ["2", "nodes"]
    assert " ".join(rows["workers for join state"][2:]) == "ceil(1.8 GiB / 1 GiB a worker)"


def test_json_has_the_inputs_the_figures_and_the_coefficients():
    result = invoke("plan", *SMALL, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["inputs"]["events_per_second"] == 100 and document["inputs"]["ttl_days"] == 1
    plan = document["plan"]
    assert plan["workers"]["value"] == 2 and plan["partitions"]["value"] == 8
    assert plan["records_per_second"]["value"] == pytest.approx(150.095)
    assert plan["join_state"]["value"] * GiB == pytest.approx(9_360_000 * 202.0)
    assert plan["group_count_rows_per_day"]["value"] == 230_400
    assert document["coefficients"]["join_bytes_per_id"]["source"].startswith("bench_memory.py")
    # the share and delay were given: they are inputs, not measured defaults
    assert "verified_share" not in document["coefficients"] and "label_delay_hours" not in document["coefficients"]


@pytest.mark.parametrize("extra, message", [
    (["--events-per-second", "0"], "error: --events-per-second must be a positive number, got 0"),
    (["--sites", "-4"], "error: --sites must be a positive number, got -4"),
    (["--retention-days", "0"], "error: --retention-days must be a positive number, got 0"),
    (["--verified-share", "1.5"], "error: --verified-share is a share of the events: at most 1, got 1.5"),
    (["--ttl-days", "nan"], "error: --ttl-days must be a positive number, got nan"),
    (["--groups", "2"], "error: --attribute-sets (3) cannot exceed --groups (2): each attribute set has at least one"
                        " group"),
])
def test_bad_input_is_one_error_line_and_exit_2(extra, message):
    given = {"--events-per-second": "100", "--sites": "2", "--groups": "9", "--retention-days": "10"}
    given.update(dict(zip(extra[::2], extra[1::2])))
    result = invoke("plan", *[word for pair in given.items() for word in pair])
    assert one_error(result, 2) == message
    assert result.stdout == ""


def test_a_value_that_is_no_number_or_a_missing_option_is_one_error_line(capsys):
    code, out, err = run_captured(capsys, "plan", "--events-per-second", "many", "--sites", "2", "--groups", "9",
                                  "--retention-days", "10")
    assert code == 2 and out == "" and "'--events-per-second'" in single_error(err)
    code, out, err = run_captured(capsys, "plan", "--events-per-second", "100", "--sites", "2", "--groups", "9")
    assert code == 2 and out == "" and "Missing option '--retention-days'" in single_error(err)
