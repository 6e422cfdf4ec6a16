"""Subcommands of `agent`: each module has `register(subparsers, common)`.

Modules keep heavy imports inside their functions so that `agent --help` and the daemon's start
stay fast.
"""

from agent.commands import config_cmd, db, services
from agent.commands import api, evacuate, flavor, fleet, server

COMMAND_MODULES = (db, services, config_cmd)
COMMAND_MODULES += (fleet, evacuate, api, flavor, server)
