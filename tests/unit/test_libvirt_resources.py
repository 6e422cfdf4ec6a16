"""Parsers behind get_available_resource: cpu_info, memory use, local disk, uptime."""

from __future__ import annotations

import json

import pytest

from agent.virt.libvirt import resources

NODE = resources.NodeInfo(arch="x86_64", memory_mb=16384, cpus=8, nodes=1, sockets=1, cores=4,
                          threads=2)

QEMU_CAPS = """<capabilities><host>
  <cpu><arch>x86_64</arch><model>Broadwell-noTSX-IBRS</model><vendor>Intel</vendor>
    <topology sockets='2' dies='1' cores='6' threads='2'/>
    <feature name='vme'/><feature name='avx512f'/><feature name='ss'/>
  </cpu>
  <topology><cells num='2'/></topology>
</host></capabilities>"""

TEST_HV_CAPS = """<capabilities><host>
  <cpu><arch>i686</arch><features><pae/><nonpae/></features></cpu>
</host></capabilities>"""


def test_cpu_info_from_qemu_capabilities():
    info = json.loads(resources.cpu_info_json(QEMU_CAPS, NODE))
    assert info == {
        "arch": "x86_64", "model": "Broadwell-noTSX-IBRS", "vendor": "Intel",
        "topology": {"cells": 2, "sockets": 2, "cores": 6, "threads": 2},
        "features": ["avx512f", "ss", "vme"],
    }


def test_cpu_info_without_topology_falls_back_to_node_info():
    info = resources.cpu_info(TEST_HV_CAPS, NODE)
    assert info["arch"] == "i686"
    assert info["model"] is None and info["vendor"] is None
    assert info["topology"] == {"cells": 1, "sockets": 1, "cores": 4, "threads": 2}
    assert info["features"] == ["nonpae", "pae"]


def test_host_arch():
    assert resources.host_arch(QEMU_CAPS) == "x86_64"
    assert resources.host_arch("<capabilities/>") == ""


@pytest.mark.parametrize("stats, used", [
    ({"total": 16777216, "free": 8388608, "buffers": 1048576, "cached": 2097152}, 5120),
    ({"total": 16777216, "free": 16777216}, 0),
    ({"total": 16777216, "free": 20000000}, 0),
    ({"free": 8388608, "buffers": 1048576, "cached": 2097152}, 5120),
    ({"total": 24731708, "free": 22895744, "buffers": 43516, "cached": 1014360}, 759),
    ({"total": 67108864, "free": 1048576}, 16384),
], ids=["typical", "all-free", "free-above-total", "no-total-uses-node-info",
        "stats-see-more-memory-than-node-info", "capped-at-node-info"])
def test_memory_mb_used_is_total_minus_free_buffers_cached(stats, used):
    assert resources.memory_mb_used(16384, stats) == used


def test_disk_usage_counts_sparse_files_against_available_least(tmp_path):
    before = resources.disk_usage(str(tmp_path))
    sparse = tmp_path / "disk.img"
    with open(sparse, "wb") as fh:
        fh.truncate(3 * resources.GiB)  # 3 GiB apparent, nothing allocated
    after = resources.disk_usage(str(tmp_path))
    assert after.total_gb == before.total_gb
    assert before.available_least_gb - after.available_least_gb in (2, 3, 4)
    assert after.available_least_gb <= after.free_gb - 2


def test_a_missing_instances_path_is_measured_on_its_filesystem_and_not_created(tmp_path):
    sparse = tmp_path / "disk.img"
    with open(sparse, "wb") as fh:
        fh.truncate(3 * resources.GiB)  # a sparse disk next to, not under, instances_path
    missing = tmp_path / "state" / "instances"
    usage = resources.disk_usage(str(missing))
    assert usage.total_gb == resources.disk_usage(str(tmp_path)).total_gb
    assert usage.available_least_gb == usage.free_gb  # no disks under it yet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.img"]


def test_read_uptime_from_proc_tree(tmp_path):
    (tmp_path / "uptime").write_text("12345.67 45678.90\n")
    assert resources.read_uptime(str(tmp_path)) == 12345
    assert resources.read_uptime(str(tmp_path / "missing")) is None


def test_node_info_from_libvirt():
    assert resources.NodeInfo.from_libvirt(["x86_64", 4826, 2, 2100, 1, 1, 2, 1]) == \
        resources.NodeInfo("x86_64", 4826, 2, 1, 1, 2, 1)
