"""fakevirt: an in-memory hypervisor implementing the ComputeDriver interface."""
