"""The words every layer shares, as nova spells them: instance vm_state and task_state strings,
power-state numbers, migration types and statuses, service binaries and topics, and the agent's
automatic disable reasons; with the groups of them that start-up, the power-state sync, the
resource tracker and the control plane reason about; and the server status a user sees
(`server_status`: the API's and `agent server`'s Status, the same words).

This module sits below everything else (agent.db, agent.virt, agent.compute, agent.control all
import it) and imports nothing from the agent.
"""

from __future__ import annotations

import enum

# -- services ---------------------------------------------------------------------------------
COMPUTE_BINARY = "compute-agent"
COMPUTE_TOPIC = "compute"
# nova's name for the compute binary: its clients send it (novaclient's service-enable and
# service-disable hard-code it), so the compute binary answers to it too.
NOVA_COMPUTE_BINARY = "nova-compute"
COMPUTE_ZONE = "nova"      # nova's availability zone of compute services
INTERNAL_ZONE = "internal"  # nova's zone of every other binary


def canonical_binary(binary: str) -> str:
    """The stored binary a requested one means: nova's 'nova-compute' is COMPUTE_BINARY."""
    return COMPUTE_BINARY if binary == NOVA_COMPUTE_BINARY else binary


def service_zone(binary: str) -> str:
    return COMPUTE_ZONE if binary == COMPUTE_BINARY else INTERNAL_ZONE
# A disable the agent makes on its own carries a reason with this prefix; an operator's reason
# may not start with it, and the agent lifts only reasons that carry it.
AUTO_PREFIX = "AUTO: "
AUTO_STARTING = AUTO_PREFIX + "starting"
NEW_SERVICE_DISABLED = "New service disabled by enable_new_services = false"
MAX_REASON_LENGTH = 255  # services.disabled_reason is String(255)


# -- power_state (nova's integers) -------------------------------------------------------------
class PowerState(enum.IntEnum):
    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


# The guest is on: it holds its vCPUs and memory on the host.
ACTIVE_POWER_STATES = (PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED)

# -- vm_state ---------------------------------------------------------------------------------
ACTIVE = "active"
BUILDING = "building"
PAUSED = "paused"
SUSPENDED = "suspended"
STOPPED = "stopped"
RESCUED = "rescued"
RESIZED = "resized"
SOFT_DELETED = "soft-delete"
DELETED = "deleted"
ERROR = "error"
SHELVED = "shelved"
SHELVED_OFFLOADED = "shelved_offloaded"

# -- task_state -------------------------------------------------------------------------------
SCHEDULING = "scheduling"
BLOCK_DEVICE_MAPPING = "block_device_mapping"
NETWORKING = "networking"
SPAWNING = "spawning"

IMAGE_SNAPSHOT = "image_snapshot"
IMAGE_SNAPSHOT_PENDING = "image_snapshot_pending"
IMAGE_PENDING_UPLOAD = "image_pending_upload"
IMAGE_UPLOADING = "image_uploading"
IMAGE_BACKUP = "image_backup"

REBUILDING = "rebuilding"
REBUILD_BLOCK_DEVICE_MAPPING = "rebuild_block_device_mapping"
REBUILD_SPAWNING = "rebuild_spawning"

REBOOTING = "rebooting"
REBOOT_PENDING = "reboot_pending"
REBOOT_STARTED = "reboot_started"
REBOOTING_HARD = "rebooting_hard"
REBOOT_PENDING_HARD = "reboot_pending_hard"
REBOOT_STARTED_HARD = "reboot_started_hard"

PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
POWERING_OFF = "powering-off"
POWERING_ON = "powering-on"
RESCUING = "rescuing"
UNSHELVING = "unshelving"

RESIZE_PREP = "resize_prep"
RESIZE_MIGRATING = "resize_migrating"
RESIZE_MIGRATED = "resize_migrated"
RESIZE_FINISH = "resize_finish"
RESIZE_REVERTING = "resize_reverting"
RESIZE_CONFIRMING = "resize_confirming"

MIGRATING = "migrating"
DELETING = "deleting"

# -- groups -----------------------------------------------------------------------------------
BUILD_TASKS = frozenset({SCHEDULING, BLOCK_DEVICE_MAPPING, NETWORKING, SPAWNING})
REBUILD_TASKS = frozenset({REBUILDING, REBUILD_BLOCK_DEVICE_MAPPING, REBUILD_SPAWNING})
# image_backup is deliberately absent: nova leaves it alone at start-up.
SNAPSHOT_TASKS = frozenset({IMAGE_SNAPSHOT, IMAGE_SNAPSHOT_PENDING, IMAGE_PENDING_UPLOAD,
                            IMAGE_UPLOADING})
SOFT_REBOOT_TASKS = frozenset({REBOOT_PENDING, REBOOT_STARTED, REBOOTING})
HARD_REBOOT_TASKS = frozenset({REBOOT_PENDING_HARD, REBOOT_STARTED_HARD, REBOOTING_HARD})
REBOOT_IN_FLIGHT_TASKS = frozenset({REBOOTING, REBOOTING_HARD, REBOOT_STARTED,
                                    REBOOT_STARTED_HARD})
# A guest found running with one of these tasks finished it: the task is just cleared.
CLEARED_WHEN_RUNNING_TASKS = REBOOT_IN_FLIGHT_TASKS | {PAUSING, UNPAUSING}
REBOOT_PENDING_HARD_VM_STATES = frozenset({ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR})

RESIZE_TASKS = frozenset({RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED, RESIZE_FINISH,
                          RESIZE_REVERTING, RESIZE_CONFIRMING})
# Tasks that make heavy disk or network I/O on the host (stats io_workload).
IO_TASKS = frozenset({RESIZE_MIGRATING, REBUILDING, RESIZE_PREP, IMAGE_SNAPSHOT, IMAGE_BACKUP,
                      RESCUING, UNSHELVING})

# -- migrations -------------------------------------------------------------------------------
EVACUATION = "evacuation"
LIVE_MIGRATION = "live-migration"
# An evacuation whose destination has taken over: the source's guest must go.
EVACUATION_DONE = "done"  # the destination took over; the source has not cleaned up yet
EVACUATION_CLEANUP_STATUSES = ("accepted", "pre-migrating", EVACUATION_DONE)
# Statuses after which a migration no longer holds resources.
FINISHED_MIGRATION_STATUSES = ("confirmed", "reverted", "failed", "completed", "cancelled",
                               "done", "error")
LIVE_MIGRATION_ACTIVE_STATUSES = frozenset({"queued", "preparing", "running"})

# -- server status (nova's API and `agent server` show it) ------------------------------------
# nova's status by vm_state, then by (vm_state, task_state) where a task changes it
# (nova.api.openstack.common's state map).
_DEFAULT_STATUS = {
    ACTIVE: "ACTIVE", BUILDING: "BUILD", STOPPED: "SHUTOFF",
    RESIZED: "VERIFY_RESIZE", PAUSED: "PAUSED", SUSPENDED: "SUSPENDED",
    RESCUED: "RESCUE", ERROR: "ERROR", DELETED: "DELETED",
    SOFT_DELETED: "SOFT_DELETED", SHELVED: "SHELVED",
    SHELVED_OFFLOADED: "SHELVED_OFFLOADED",
}
_REBUILD = {REBUILDING: "REBUILD", REBUILD_BLOCK_DEVICE_MAPPING: "REBUILD",
            REBUILD_SPAWNING: "REBUILD"}
_RESIZE = {RESIZE_PREP: "RESIZE", RESIZE_MIGRATING: "RESIZE",
           RESIZE_MIGRATED: "RESIZE", RESIZE_FINISH: "RESIZE"}
_TASK_STATUS = {
    ACTIVE: {
        REBOOTING: "REBOOT", REBOOT_PENDING: "REBOOT",
        REBOOT_STARTED: "REBOOT", REBOOTING_HARD: "HARD_REBOOT",
        REBOOT_PENDING_HARD: "HARD_REBOOT", REBOOT_STARTED_HARD: "HARD_REBOOT",
        MIGRATING: "MIGRATING", **_REBUILD, **_RESIZE},
    STOPPED: {**_REBUILD, **_RESIZE},
    RESIZED: {RESIZE_REVERTING: "REVERT_RESIZE"},
    PAUSED: {MIGRATING: "MIGRATING"},
    ERROR: {**_REBUILD},
}


def server_status(vm_state: str | None, task_state: str | None) -> str:
    """nova's server status for a vm_state and task_state: e.g. ('active', None) ACTIVE,
    ('active', 'rebooting_hard') HARD_REBOOT, ('stopped', None) SHUTOFF, ('building', ...)
    BUILD; UNKNOWN for a vm_state nova does not know."""
    by_task = _TASK_STATUS.get(vm_state or "", {})
    if task_state in by_task:
        return by_task[task_state]
    return _DEFAULT_STATUS.get(vm_state or "", "UNKNOWN")
