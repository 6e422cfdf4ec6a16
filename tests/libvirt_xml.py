"""Node XML for libvirt's test hypervisor: a host with N domains in mixed states.

`test:///<path>` opens a private test hypervisor described by the file, so tests and benchmarks
get thousands of domains without a daemon. States cycle running, paused, shut off (the test
driver's `<test:runstate>` sets each domain's state), and every domain's uuid, name, vCPUs and
memory are derived from its index, so a test can compute what the driver must report.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from agent.virt.types import PowerState

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
# libvirt virDomainState values used in <test:runstate>, with the power state each maps to.
STATES = (
    (1, PowerState.RUNNING),   # VIR_DOMAIN_RUNNING
    (3, PowerState.PAUSED),    # VIR_DOMAIN_PAUSED
    (5, PowerState.SHUTDOWN),  # VIR_DOMAIN_SHUTOFF
)
_UUID_NAMESPACE = uuidlib.UUID("5b1f7e52-4d0c-4c53-9a2e-3c8f1b0f6a10")


@dataclass(frozen=True)
class GuestSpec:
    uuid: str
    name: str
    power_state: PowerState
    vcpus: int
    memory_mb: int
    runstate: int


@dataclass(frozen=True)
class NodeSpec:
    path: Path
    domains: tuple[GuestSpec, ...]
    cpus: int
    memory_mb: int

    @property
    def uri(self) -> str:
        return f"test://{self.path}"


def domain(index: int) -> GuestSpec:
    runstate, power_state = STATES[index % len(STATES)]
    return GuestSpec(uuid=str(uuidlib.uuid5(_UUID_NAMESPACE, f"domain-{index}")),
                      name=f"guest-{index:05d}", power_state=power_state,
                      vcpus=1 + index % 4, memory_mb=64 * (1 + index % 8), runstate=runstate)


def node_xml(domains: tuple[GuestSpec, ...], *, cpus: int = 32,
             memory_mb: int = 262144) -> str:
    lines = [
        "<node>",
        f"  <cpu><nodes>2</nodes><sockets>2</sockets><cores>{max(1, cpus // 4)}</cores>"
        f"<threads>2</threads><active>{cpus}</active><mhz>2400</mhz><model>x86_64</model></cpu>",
        f"  <memory>{memory_mb * 1024}</memory>",
    ]
    for dom in domains:
        lines.append(
            f"  <domain type='test' xmlns:test='{TEST_NS}'><name>{escape(dom.name)}</name>"
            f"<uuid>{dom.uuid}</uuid><memory unit='MiB'>{dom.memory_mb}</memory>"
            f"<vcpu>{dom.vcpus}</vcpu><os><type>hvm</type></os>"
            f"<test:runstate>{dom.runstate}</test:runstate></domain>")
    lines.append("</node>")
    return "\n".join(lines) + "\n"


def write_node(directory: Path, count: int, *, cpus: int = 32,
               memory_mb: int = 262144) -> NodeSpec:
    """Write <directory>/node.xml with `count` domains; returns what it describes."""
    domains = tuple(domain(i) for i in range(count))
    path = Path(directory) / "node.xml"
    path.write_text(node_xml(domains, cpus=cpus, memory_mb=memory_mb), encoding="utf-8")
    return NodeSpec(path, domains, cpus, memory_mb)
