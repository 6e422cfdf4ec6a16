"""Pieces of `get_available_resource`: pure parsers of what libvirt and the host report.

Capabilities XML gives the CPU description (`cpu_info`); the instances' filesystem gives local
disk; /proc gives uptime. Readers take their root (the directory, the /proc path) as a
parameter so tests hand them a small tree of their own.
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Mapping, Sequence

from agent.virt.disk import nearest_existing_dir

LOG = logging.getLogger(__name__)

GiB = 1024 ** 3


@dataclass(frozen=True)
class NodeInfo:
    """virConnectGetInfo: model, memory (MiB), cpus, mhz, NUMA nodes, sockets, cores, threads."""

    arch: str
    memory_mb: int
    cpus: int
    nodes: int
    sockets: int
    cores: int
    threads: int

    @classmethod
    def from_libvirt(cls, info: Sequence) -> "NodeInfo":
        arch, memory_mb, cpus, _mhz, nodes, sockets, cores, threads = info[:8]
        return cls(str(arch), int(memory_mb), int(cpus), int(nodes), int(sockets), int(cores),
                   int(threads))


@dataclass(frozen=True)
class DiskUsage:
    total_gb: int
    used_gb: int
    free_gb: int
    available_least_gb: int


def host_arch(capabilities_xml: str) -> str:
    """The host CPU architecture named by the capabilities XML ('' when absent)."""
    root = ET.fromstring(capabilities_xml)
    return (root.findtext("host/cpu/arch") or "").strip()


def cpu_info(capabilities_xml: str, node: NodeInfo) -> dict:
    """nova's cpu_info: arch, model, vendor, topology {cells, sockets, cores, threads} and the
    sorted feature names. Topology comes from the capabilities XML where it says, else from the
    node info (libvirt's test hypervisor describes no topology)."""
    root = ET.fromstring(capabilities_xml)
    cpu = root.find("host/cpu")
    cpu = cpu if cpu is not None else ET.Element("cpu")
    topology = cpu.find("topology")
    cells = root.find("host/topology/cells")

    def topo(name: str, fallback: int) -> int:
        if topology is not None and topology.get(name, "").isdigit():
            return int(topology.get(name))
        return fallback

    features = {f.get("name") for f in cpu.findall("feature") if f.get("name")}
    features.update(child.tag for child in cpu.findall("features/*"))
    return {
        "arch": (cpu.findtext("arch") or node.arch).strip(),
        "model": (cpu.findtext("model") or "").strip() or None,
        "vendor": (cpu.findtext("vendor") or "").strip() or None,
        "topology": {
            "cells": _cell_count(cells) or node.nodes,
            "sockets": topo("sockets", node.sockets),
            "cores": topo("cores", node.cores),
            "threads": topo("threads", node.threads),
        },
        "features": sorted(features),
    }


def _cell_count(cells: ET.Element | None) -> int:
    """NUMA cells in the capabilities XML; 0 when it does not say (libvirt's test hypervisor
    reports num='0' for a custom node)."""
    if cells is None or not cells.get("num", "").isdigit():
        return 0
    return int(cells.get("num"))


def cpu_info_json(capabilities_xml: str, node: NodeInfo) -> str:
    return json.dumps(cpu_info(capabilities_xml, node), sort_keys=True)


def memory_mb_used(total_mb: int, stats_kib: Mapping[str, int]) -> int:
    """Memory in use from virNodeGetMemoryStats (KiB): total - (free + buffers + cached).

    The statistics' own total is used when they carry one: libvirt's node info and its memory
    statistics can read different sources (in a container, node info may see a NUMA or cgroup
    view smaller than /proc/meminfo), and mixing them would report 0 used. The result is capped
    at `total_mb`, the capacity reported next to it."""
    avail_kib = sum(int(stats_kib.get(key, 0)) for key in ("free", "buffers", "cached"))
    stats_total_kib = int(stats_kib.get("total", 0)) or total_mb * 1024
    return min(total_mb, max(0, stats_total_kib - avail_kib) // 1024)


def sparse_overcommit_bytes(path: str) -> int:
    """Bytes the sparse files under `path` may still claim: apparent size minus allocation."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += max(0, st.st_size - st.st_blocks * 512)
    return total


def disk_usage(path: str) -> DiskUsage:
    """Size, use and free space of the filesystem holding `path`, in GiB (rounded down), and
    what is left once the sparse disks under `path` are fully written (disk_available_least).
    A missing `path` is measured on its nearest existing ancestor's filesystem, with no disks
    under it yet; nothing is created."""
    existing = nearest_existing_dir(path)
    st = os.statvfs(existing)
    total = st.f_frsize * st.f_blocks
    free = st.f_frsize * st.f_bavail
    used = total - st.f_frsize * st.f_bfree
    sparse = sparse_overcommit_bytes(path) if existing == os.path.abspath(path) else 0
    least = (free - sparse) // GiB
    return DiskUsage(total // GiB, used // GiB, free // GiB, least)


def read_uptime(proc_root: str = "/proc") -> int | None:
    """Seconds since the host booted, from <proc_root>/uptime; None when unreadable."""
    try:
        with open(os.path.join(proc_root, "uptime"), encoding="ascii") as fh:
            return int(float(fh.read().split()[0]))
    except (OSError, ValueError, IndexError):
        return None
