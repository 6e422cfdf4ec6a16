"""load_driver: the configured name picks the driver; a bad choice is a ConfigError."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from agent.config import RawValue, resolve
from agent.errors import ConfigError
from agent.virt.loader import load_driver
from tests.conftest import require_tier


def conf_for(tmp_path, driver, extra=None):
    raw = {("DEFAULT", "compute_driver"): RawValue(driver, "test"),
           ("DEFAULT", "state_path"): RawValue(str(tmp_path), "test")}
    raw.update({key: RawValue(value, "test") for key, value in (extra or {}).items()})
    return resolve(raw)


def test_fake_driver_is_loaded(tmp_path):
    driver = load_driver(conf_for(tmp_path, "fake"))
    assert driver.name == "fake"
    assert driver.get_available_nodes()


def test_libvirt_driver_is_loaded(tmp_path):
    require_tier("libvirt", importlib.util.find_spec("libvirt") is not None,
                 "libvirt-python is not installed")
    driver = load_driver(conf_for(tmp_path, "libvirt",
                                  {("libvirt", "connection_uri"): "test:///default"}))
    assert driver.name == "libvirt"


def test_unknown_driver_name_is_a_config_error(tmp_path):
    conf = conf_for(tmp_path, "fake").replace(compute_driver="xen")
    with pytest.raises(ConfigError, match="compute_driver = 'xen': unknown virt driver; "
                                          "expected one of fake, libvirt"):
        load_driver(conf)


def test_libvirt_without_libvirt_python_says_how_to_install(tmp_path, monkeypatch):
    # A None entry in sys.modules makes `import libvirt` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "libvirt", None)
    with pytest.raises(ConfigError, match="libvirt-python.*pip install"):
        load_driver(conf_for(tmp_path, "libvirt"))
