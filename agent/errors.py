"""The agent's error hierarchy.

Library code raises these; only the CLI turns them into an exit status and one line on stderr.
"""


class AgentError(Exception):
    """Base of every error the agent reports to its user."""

    exit_code = 1


class ConfigError(AgentError):
    """Bad configuration: a file, section, key or value. Stops the agent with exit status 2."""

    exit_code = 2


class UsageError(AgentError):
    """A command line that cannot be run as given (a required option missing, options that do
    not go together). Exit status 2, as argparse's own usage errors."""

    exit_code = 2


class DatabaseError(AgentError):
    """The database cannot be reached, or its schema is missing or out of date."""


class ServiceError(AgentError):
    """An operator request on the service registry that cannot be honoured."""


class DriverError(AgentError):
    """The virt driver failed in a way that stops the current operation."""


class HypervisorVersionError(DriverError):
    """The hypervisor or its management library is older than the supported floor."""


class InstanceNotFound(DriverError):
    """The hypervisor has no guest for the given instance."""

    def __init__(self, instance_uuid: str):
        super().__init__(f"instance {instance_uuid} not found on the hypervisor")
        self.instance_uuid = instance_uuid


class InstanceExists(DriverError):
    """The hypervisor already defines a guest for the instance (a duplicate spawn)."""

    def __init__(self, instance_uuid: str):
        super().__init__(f"instance {instance_uuid} already exists on the hypervisor")
        self.instance_uuid = instance_uuid


class ScenarioError(ConfigError):
    """A fakevirt scenario file is malformed."""


class StartupError(AgentError):
    """A start-up step failed; the agent stops without destroying anything."""


class FirewallError(AgentError):
    """Applying firewall rules failed; the previous rules stay in place."""
