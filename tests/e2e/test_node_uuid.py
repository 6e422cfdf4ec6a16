"""A node's uuid is random and kept in state_path/compute_id (nova's compute_id), not derived
from its name: the same scenario run by two agents (each with its own state directory and
database) gives two node uuids, and each agent keeps its own at the next start."""

from __future__ import annotations

import json

from tests.agent_process import REPO_ROOT, agent_command

EXAMPLE = REPO_ROOT / "etc" / "scenario.example.toml"


def once(state):
    result = agent_command("--host", "compute-1", "--state-path", str(state), "--scenario",
                           str(EXAMPLE), "--once", "--format", "json")
    assert result.returncode == 0, result.stderr
    (node,) = json.loads(result.stdout)["nodes"]
    assert node["hypervisor_hostname"] == "compute-1"
    return node["uuid"]


def test_same_scenario_two_agents_two_node_uuids_each_kept(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    uuid_a, uuid_b = once(first), once(second)
    assert uuid_a != uuid_b
    assert (first / "compute_id").read_text().strip() == uuid_a
    assert (second / "compute_id").read_text().strip() == uuid_b
    assert once(first) == uuid_a
