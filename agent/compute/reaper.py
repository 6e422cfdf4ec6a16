"""Guests still on the hypervisor whose instance was deleted: nova's periodic
`_cleanup_running_deleted_instances` (running_deleted_instance_action, every
running_deleted_instance_poll_interval seconds, first run at the first tick).

The control plane deletes an instance in the database alone when its host is down (nova's
local delete, agent.control.servers.act); the guest is still defined on that host when its
agent comes back. This job finds such guests (the driver's guests whose instance row on this
host is soft-deleted) and, by the action: 'reap' destroys them with their disks and removes
their firewall rules, 'shutdown' powers them off, 'log' logs each one, 'noop' does nothing.
Each guest is handled under its instance's lock; one guest's failure is logged and the job goes
on. nova's running_deleted_instance_timeout (a grace period after the delete) is not offered.
"""

from __future__ import annotations

import logging

from agent.compute.instance_locks import InstanceLocks
from agent.db import compute_queries as q
from agent.virt.types import InstanceRef

LOG = logging.getLogger(__name__)

ACTIONS = ("reap", "shutdown", "log", "noop")


def cleanup_running_deleted_instances(db, driver, firewall, host: str, action: str,
                                      locks: InstanceLocks) -> list[str]:
    """Run `action` (one of ACTIONS) on every guest of `driver` whose instance row of `host`
    is deleted; returns their uuids (empty for 'noop', which reads nothing)."""
    if action == "noop":
        return []
    guests = {g.uuid: g for g in driver.list_instances()}
    with db.sessions() as session:
        deleted = q.load_deleted_instances(session, host, list(guests))
    found = []
    for rec in deleted:
        guest = guests[rec.uuid]
        found.append(rec.uuid)
        if action == "log":
            LOG.warning("instance %s: guest %r is still on this host but the instance is "
                        "deleted", rec.uuid, guest.name)
            continue
        try:
            with locks.lock(rec.uuid):
                ref = InstanceRef(rec.uuid, guest.name)
                if action == "shutdown":
                    LOG.info("instance %s: powering off guest %r, still on this host but the "
                             "instance is deleted", rec.uuid, guest.name)
                    driver.power_off(ref, True)
                else:
                    LOG.info("instance %s: destroying guest %r, still on this host but the "
                             "instance is deleted", rec.uuid, guest.name)
                    driver.destroy(ref, (), destroy_disks=True)
                firewall.remove_instance(rec.uuid)
                firewall.apply()
        except Exception as exc:  # noqa: BLE001 - the next guest is still handled
            LOG.error("instance %s: %s of the deleted instance's guest failed: %s", rec.uuid,
                      action, exc)
    return found
