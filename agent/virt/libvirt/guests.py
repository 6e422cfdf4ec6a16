"""What the libvirt driver writes and reads of a guest: the domain XML of a guest it spawns (a
pure function of the instance, its flavor and the hypervisor), and the `InstanceInfo` of a
domain (from its info() or its bulk statistics).

For now a guest is its flavor's vCPUs and memory with no disk and no NIC (the image's disk and
the instance's interfaces come with the image and network services): enough for the hypervisor
to run it, list it and account for it. Values are escaped by ElementTree, never formatted into
the text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from agent.virt.libvirt.checks import power_state_from_domain_state
from agent.virt.types import Flavor, InstanceInfo, InstanceRef

# The hypervisor type libvirt's test driver reports (getType()); its domains are type 'test'.
TEST_HYPERVISOR = "test"


def domain_type(hypervisor_type: str, virt_type: str) -> str:
    """The <domain type=...> for `virt_type` ([libvirt] virt_type: kvm or qemu) on a hypervisor
    of `hypervisor_type`; libvirt's test driver only takes 'test'."""
    return "test" if hypervisor_type.lower() == TEST_HYPERVISOR else virt_type


def guest_xml(instance: InstanceRef, flavor: Flavor, image_ref: str | None, *,
              dom_type: str, arch: str) -> str:
    """The domain XML: name and uuid of `instance`, `flavor.vcpus` vCPUs and `flavor.memory_mb`
    MiB, an HVM guest of `arch` that is destroyed when it powers off, and the image it was asked
    for in its description. ValueError for a flavor without vCPUs or memory."""
    if flavor.vcpus < 1 or flavor.memory_mb < 1:
        raise ValueError(f"flavor of instance {instance.uuid} has {flavor.vcpus} vCPUs and "
                         f"{flavor.memory_mb} MiB of memory; a guest needs at least 1 of each")
    dom = ET.Element("domain", type=dom_type)
    ET.SubElement(dom, "name").text = instance.name
    ET.SubElement(dom, "uuid").text = instance.uuid
    ET.SubElement(dom, "description").text = (f"instance {instance.uuid}, image "
                                              f"{image_ref or '(none)'}")
    ET.SubElement(dom, "memory", unit="MiB").text = str(flavor.memory_mb)
    ET.SubElement(dom, "vcpu").text = str(flavor.vcpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch=arch).text = "hvm"
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "devices")
    return ET.tostring(dom, encoding="unicode")


def info_from_domain(dom: Any) -> InstanceInfo:
    """The guest as one `info()` call describes it (memory: its maximum, MiB)."""
    state, max_mem_kib, _mem, vcpus, _cpu_time = dom.info()
    return InstanceInfo(dom.UUIDString(), dom.name(),
                        power_state_from_domain_state(state), int(vcpus),
                        int(max_mem_kib) // 1024)


def info_from_stats(dom: Any, stats: dict) -> InstanceInfo | None:
    """The guest from its getAllDomainStats record; None when the record lacks a field."""
    try:
        state = stats["state.state"]
        vcpus = stats["vcpu.current"]
        max_mem_kib = stats["balloon.maximum"]
    except KeyError:
        return None
    return InstanceInfo(dom.UUIDString(), dom.name(),
                        power_state_from_domain_state(state), int(vcpus),
                        int(max_mem_kib) // 1024)
