"""Benchmark: the libvirt driver listing and reading guests, and get_available_resource on each
driver.

Run:  .venv/bin/python bench/bench_libvirt.py [--sizes 1000 5000] [--repeat 3]

Listing (libvirt's test hypervisor, a generated node XML with N guests, running/paused/shut
off in turn). Columns, each the best of --repeat runs:
  open              opening test:///<node.xml> (libvirt parses the node file)
  list_instances    the driver's listing (one bulk statistics call, then one info() per guest
                    the statistics say too little about; the test hypervisor reports state only)
  per-domain info   the same listing done naively: listAllDomains, then info() for each domain
  get_info each     get_info(InstanceRef) for every guest (uuid lookup + info)
On qemu:///system (when a libvirtd answers), --qemu-guests defined, never started guests
(removed afterwards) are listed both ways: there every libvirt call is a round trip to the
daemon, so the bulk statistics call pays off.
get_available_resource: fakevirt (if installed), test:///default, a generated 5,000-guest node,
and qemu:///system when a libvirtd answers there. Prints tables; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import libvirt  # noqa: E402

from agent.config import RawValue, resolve  # noqa: E402
from agent.virt.libvirt.driver import LibvirtDriver  # noqa: E402
from agent.virt.libvirt.host import Host, start_event_loop  # noqa: E402
from agent.virt.types import InstanceRef  # noqa: E402
from tests.libvirt_xml import write_node  # noqa: E402


def make_conf(state_path: str, uri: str | None = None):
    raw = {("DEFAULT", "state_path"): state_path}
    if uri is not None:
        raw[("libvirt", "connection_uri")] = uri
    return resolve({key: RawValue(value, "bench") for key, value in raw.items()})


def best_of(repeat: int, function) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def libvirt_driver(state_path: str, uri: str) -> LibvirtDriver:
    driver = LibvirtDriver(make_conf(state_path, uri), host=Host(uri))
    driver.init_host("bench")
    return driver


def bench_listing(sizes, repeat, workdir: Path) -> list[tuple]:
    rows = []
    for size in sizes:
        (workdir / f"n{size}").mkdir()
        node = write_node(workdir / f"n{size}", size)
        open_s, conn = best_of(1, lambda: libvirt.open(node.uri))
        driver = libvirt_driver(str(workdir / f"state{size}"), node.uri)
        list_s, listed = best_of(repeat, driver.list_instances)
        assert len(listed) == size, f"listed {len(listed)} of {size}"
        naive_s, _ = best_of(repeat, lambda: [d.info() for d in conn.listAllDomains(0)])
        refs = [InstanceRef(i.uuid, i.name) for i in listed]
        info_s, _ = best_of(1, lambda: [driver.get_info(r) for r in refs])
        rows.append((size, open_s, list_s, naive_s, info_s, info_s / size))
        driver.cleanup_host()
        conn.close()
    return rows


def bench_qemu_listing(count: int, repeat: int, workdir: Path) -> tuple | None:
    uri = "qemu:///system"
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        print(f"(qemu:///system listing skipped: {exc.get_error_message()})")
        return None
    prefix = f"bench-libvirt-{os.getpid()}-"
    defined = []
    try:
        for i in range(count):
            defined.append(conn.defineXML(
                f"<domain type='qemu'><name>{prefix}{i}</name><memory unit='MiB'>32</memory>"
                "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"))
        driver = libvirt_driver(str(workdir / "qemu-list"), uri)
        list_s, listed = best_of(repeat, driver.list_instances)
        naive_s, _ = best_of(repeat, lambda: [d.info() for d in conn.listAllDomains(0)])
        driver.cleanup_host()
        return (len(listed), list_s, naive_s)
    finally:
        for dom in defined:
            try:
                dom.undefine()
            except libvirt.libvirtError:
                pass
        conn.close()


def bench_resources(repeat: int, workdir: Path) -> list[tuple]:
    rows = []
    try:
        from fakevirt.driver import FakeDriver
    except ImportError:
        FakeDriver = None
    if FakeDriver is not None:
        fake = FakeDriver(make_conf(str(workdir / "fake")))
        fake.init_host("bench")
        node = fake.get_available_nodes()[0]
        seconds, _ = best_of(repeat, lambda: fake.get_available_resource(node))
        rows.append(("fake", "fakevirt", seconds))
        fake.cleanup_host()
    (workdir / "res5000").mkdir()
    big = write_node(workdir / "res5000", 5000)
    targets = [("libvirt", "test:///default"), ("libvirt", big.uri)]
    try:
        libvirt.open("qemu:///system").close()
        targets.append(("libvirt", "qemu:///system"))
    except libvirt.libvirtError as exc:
        print(f"(qemu:///system skipped: {exc.get_error_message()})")
    for name, uri in targets:
        driver = libvirt_driver(str(workdir / f"res-{len(rows)}"), uri)
        node = driver.get_available_nodes()[0]
        seconds, _ = best_of(repeat, lambda: driver.get_available_resource(node))
        label = "test:///<5,000-guest node.xml>" if uri == big.uri else uri
        rows.append((name, label, seconds))
        driver.cleanup_host()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--qemu-guests", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the driver's version warnings are not results
    start_event_loop(libvirt)
    with tempfile.TemporaryDirectory(prefix="bench-libvirt-") as tmp:
        workdir = Path(tmp)
        print("Listing and reading guests through LibvirtDriver (libvirt test hypervisor)")
        print(f"{'guests':>7} | {'open':>8} | {'list_instances':>14} | {'per-domain info':>15} "
              f"| {'get_info each':>13} | {'per get_info':>12}")
        print("-" * 86)
        for size, open_s, list_s, naive_s, info_s, per in bench_listing(args.sizes, args.repeat,
                                                                      workdir):
            print(f"{size:>7} | {open_s * 1e3:>6.0f}ms | {list_s * 1e3:>12.1f}ms | "
                  f"{naive_s * 1e3:>13.1f}ms | {info_s * 1e3:>11.1f}ms | {per * 1e6:>10.1f}us")
        qemu = bench_qemu_listing(args.qemu_guests, args.repeat, workdir)
        if qemu is not None:
            print()
            print("Listing on qemu:///system (defined guests, every call a daemon round trip)")
            print(f"{'guests':>7} | {'list_instances (bulk stats)':>27} | {'per-domain info':>15}")
            print("-" * 56)
            print(f"{qemu[0]:>7} | {qemu[1] * 1e3:>25.1f}ms | {qemu[2] * 1e3:>13.1f}ms")
        print()
        print("get_available_resource (best of %d)" % args.repeat)
        print(f"{'driver':>8} | {'hypervisor':<34} | {'time':>9}")
        print("-" * 58)
        for name, label, seconds in bench_resources(args.repeat, workdir):
            print(f"{name:>8} | {label:<34} | {seconds * 1e3:>7.2f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
