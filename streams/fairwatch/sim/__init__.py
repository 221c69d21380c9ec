"""Sim: scenarios and a deterministic simulator of deployments, the smoke check and the demo."""

from fairwatch.sim.demo import DemoOptions, run_demo
from fairwatch.sim.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    packaged_scenarios,
    parse_scenario,
)
from fairwatch.sim.simulator import Simulation, simulate
from fairwatch.sim.smoke import run_smoke
from fairwatch.sim.writers import open_kafka_writer, publish, write_jsonl, write_truth

__all__ = [
    "Scenario", "ScenarioError", "load_scenario", "parse_scenario", "packaged_scenarios", "Simulation",
    "simulate", "write_jsonl", "write_truth", "publish", "open_kafka_writer", "run_smoke", "DemoOptions",
    "run_demo",
]
