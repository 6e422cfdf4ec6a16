"""An instance row's network_info as the driver and the firewall take it: one reading for
start-up (manager) and for the RPC operations, so a row neither can use is said the same way."""

from __future__ import annotations

import logging

from agent.network.network_info import parse_network_info
from agent.virt.types import VIF

LOG = logging.getLogger(__name__)


def instance_vifs(uuid: str, network_info: str | None, *, quiet: bool = False,
                  log: logging.Logger = LOG) -> tuple[VIF, ...] | None:
    """The instance's validated VIFs (empty for no network_info); None when its network_info
    cannot be read at all, logged as an error naming the instance unless `quiet`. A single
    refused security-group rule is logged and dropped; the others apply."""
    refused: list = []
    try:
        vifs = parse_network_info(uuid, network_info, refused)
    except ValueError as exc:
        if not quiet:
            log.error("%s; its firewall rules are left as they were", exc)
        return None
    if not quiet:
        for exc in refused:
            log.error("%s; this rule is refused (it allows nothing), the instance's other "
                      "rules apply", exc)
    return vifs
