"""fakevirt: an in-memory hypervisor implementing the ComputeDriver interface."""


def __getattr__(name: str):
    # `fakevirt.FakeDriver` without importing the driver when only the scenario module is used.
    if name == "FakeDriver":
        from fakevirt.driver import FakeDriver

        return FakeDriver
    raise AttributeError(name)
