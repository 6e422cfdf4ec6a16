"""The --once inventory as people read it: every instance or a count of those left out, the
service with each node (nova's hypervisor fields), versions as major.minor.release, cells that
cannot break the table."""

from __future__ import annotations

import json

import pytest

from agent.compute.manager import InstanceOutcome
from agent.compute.resource_tracker import NodeReport
from agent.inventory import MAX_TABLE_INSTANCES, Inventory, ServiceStatus, format_table, to_json
from agent.virt.types import DriverInfo

DRIVER = DriverInfo("libvirt", "QEMU", 7002022)
SERVICE = ServiceStatus(host="cn1", id=7, uuid="5b0e7a52-3e0a-4f0e-9d7c-6a2f5c1f0a11",
                        disabled=True, disabled_reason="replacing a DIMM", up=True)
NODE = NodeReport(uuid="0d1f4c38-0d3a-4b5e-8f6a-2c1b7e9d4a10", hypervisor_hostname="cn1",
                  values={"vcpus": 8, "vcpus_used": 2, "hypervisor_version": 7002022},
                  stats={}, saved="created")


def outcomes(count: int, changed: int = 0) -> tuple[InstanceOutcome, ...]:
    return tuple(InstanceOutcome(f"00000000-0000-4000-8000-{i:012d}", f"vm-{i}", "active",
                                 None, 1, "powered-on" if i < changed else "none")
                 for i in range(count))


def inventory(instances, **kwargs) -> Inventory:
    return Inventory(host="cn1", driver=DRIVER, nodes=(NODE,), instances=instances,
                     service=SERVICE, **kwargs)


def test_table_lists_every_instance_of_a_small_host():
    table = format_table(inventory(outcomes(3, changed=1)))
    assert "instances: 3 (2 none, 1 powered-on)" in table
    for i in range(3):
        assert f"vm-{i} " in table
    assert "not listed" not in table


@pytest.mark.parametrize("changed", [0, 1, 5])
def test_table_of_a_large_host_says_how_many_it_leaves_out(changed):
    count = MAX_TABLE_INSTANCES + 10
    table = format_table(inventory(outcomes(count, changed)))
    listed = [line for line in table.splitlines() if " vm-" in line]
    assert len(listed) == changed
    left = count - changed
    assert (f"({left} instances left as they were not listed; --format json lists every "
            "instance)") in table


def test_json_lists_every_instance_and_nova_hypervisor_fields():
    data = json.loads(to_json(inventory(outcomes(MAX_TABLE_INSTANCES + 10))))
    assert len(data["instances"]) == MAX_TABLE_INSTANCES + 10
    (node,) = data["nodes"]
    assert (node["state"], node["status"]) == ("up", "disabled")
    assert node["service"] == {"host": "cn1", "id": 7, "uuid": SERVICE.uuid,
                               "disabled_reason": "replacing a DIMM"}
    assert node["hypervisor_version"] == 7002022  # nova's packed integer
    assert data["driver"]["hypervisor_version"] == 7002022


def test_table_shows_versions_and_the_service_in_words():
    table = format_table(inventory(()))
    assert "driver   libvirt (QEMU 7.2.22)" in table
    assert "7002022" not in table
    assert f"service  id 7 ({SERVICE.uuid}), disabled (replacing a DIMM), up" in table


def test_without_a_service_row_nodes_have_empty_service_fields():
    data = json.loads(to_json(Inventory(host="cn1", driver=DRIVER, nodes=(NODE,))))
    (node,) = data["nodes"]
    assert (node["state"], node["status"], node["service"]) == (None, None, None)
    table = format_table(Inventory(host="cn1", driver=DRIVER))
    assert not [line for line in table.splitlines() if line.startswith("service")]


def test_table_cells_cannot_break_a_row():
    evil = (InstanceOutcome("00000000-0000-4000-8000-000000000001", "two\nlines\x1b[2J",
                            "active", None, 1, "failed", "plug-vifs: boom\nsecond line"),)
    table = format_table(inventory(evil))
    (row,) = [line for line in table.splitlines() if "two" in line]
    assert "two\\nlines\\x1b[2J" in row and "boom\\nsecond line" in row
    assert "\x1b" not in table
