"""The real libvirtd + QEMU tier: the connection its tests use, whether it answers, and what
`virsh` says about a guest (the operator's own view, independent of the agent).

`.ci/start-libvirtd` starts the system libvirtd with the QEMU driver; TCG is enough. Without it
the 'libvirtd' tier is missing: skipped, or failed under CI (`require_qemu_tier`).
"""

from __future__ import annotations

import subprocess

from tests.conftest import import_libvirt, require_tier

URI = "qemu:///system"
VIRSH_TIMEOUT_S = 60


def libvirtd_available() -> tuple[bool, str]:
    """(True, "") when `URI` opens and is QEMU; else (False, the reason)."""
    from agent.virt.libvirt.host import start_event_loop

    libvirt = import_libvirt()
    # libvirt's event implementation must be registered before this process opens its first
    # connection (as the agent does), or connections opened later never see events.
    start_event_loop(libvirt)
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        return False, f"cannot open {URI}: {exc.get_error_message()} (run .ci/start-libvirtd)"
    try:
        if conn.getType() != "QEMU":
            return False, f"{URI} is not QEMU"
    finally:
        conn.close()
    return True, ""


def require_qemu_tier() -> None:
    """Skip (fail under CI) the calling test when libvirtd with QEMU does not answer."""
    available, reason = libvirtd_available()
    require_tier("libvirtd", available, reason)


def virsh(*args: str) -> str:
    """`virsh -c URI ARGS...`'s standard output; CalledProcessError when it fails."""
    return subprocess.run(["virsh", "-c", URI, *args], check=True, capture_output=True,
                          text=True, timeout=VIRSH_TIMEOUT_S).stdout


def virsh_names(*flags: str) -> list[str]:
    """Guest names `virsh list --name FLAGS` prints (running ones; `--all` for every one)."""
    return [line.strip() for line in virsh("list", "--name", *flags).splitlines()
            if line.strip()]


def domstate(name: str) -> str:
    """The guest's state as `virsh domstate` words it: 'running', 'shut off', 'paused'..."""
    return virsh("domstate", name).strip()
