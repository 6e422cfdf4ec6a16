"""Choosing the virt driver named by `compute_driver`.

Driver modules are imported only when chosen, so the fake driver never needs libvirt-python.
"""

from __future__ import annotations

from agent.errors import ConfigError
from agent.virt.driver import ComputeDriver

DRIVERS = ("fake", "libvirt")


def load_driver(conf) -> ComputeDriver:
    """Build the driver `conf.compute_driver` names. An unknown name, or libvirt without
    libvirt-python installed, raises ConfigError."""
    name = conf.compute_driver
    if name == "fake":
        from fakevirt.driver import FakeDriver

        return FakeDriver(conf)
    if name == "libvirt":
        try:
            import libvirt  # noqa: F401 - only to report its absence clearly
        except ImportError:
            raise ConfigError("compute_driver = 'libvirt' needs the libvirt-python module, which "
                              "is not installed: install libvirt-dev (Debian) and then "
                              "'pip install compute-agent[libvirt]' (or 'pip install "
                              "libvirt-python')") from None
        from agent.virt.libvirt.driver import LibvirtDriver

        return LibvirtDriver(conf)
    raise ConfigError(f"compute_driver = {name!r}: unknown virt driver; expected one of "
                      f"{', '.join(DRIVERS)}")
