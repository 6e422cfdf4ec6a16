"""The node's identity: a uuid kept in `<state_path>/compute_id` from the day the node is first
created, and checked against the database at every start.

The check decides whether start-up may go on (and so whether evacuated guests may be
destroyed). `check_identity` is pure; `NodeIdentityStore` reads and writes the file. Only live
(not soft-deleted) compute_nodes rows count; a node deleted with its service is brought back by
the resource tracker under the same uuid.

================================  ============================================================
compute_id file / database        outcome
================================  ============================================================
absent / no row for this          a new node: a new uuid, written before the service row is
hypervisor hostname               created or claimed
absent / a row for this           stop: the identity is lost (state directory lost, or another
hypervisor hostname (any host)    machine reusing the name); the message names the uuid to
                                  restore, or the service to delete first
X / row (host, node) with X       the same node: start
X / row (host, node) with Y≠X     stop: the identity does not match
X / no row here, X under another  stop: the host was renamed (or the state directory copied)
host or hypervisor hostname
X / this hypervisor hostname      stop: the hypervisor is registered by another host
under another host
X / no row anywhere               a node with uuid X is created (a new database, or a row
                                  soft-deleted with its service brought back)
================================  ============================================================

The database holds at most one live row per hypervisor hostname (a unique constraint, revision
0004), so two hosts registering one hypervisor at the same moment cannot both succeed: the
loser's audit fails and the check, run again, names the winner.

nova stops in the same cases (its compute_id file, nova/virt/node.py, and the host-rename check
of ComputeManager.init_host): a missing or changed file is a failure to start, never a new node
that would let evacuated guests be destroyed under a second identity.
"""

from __future__ import annotations

import logging
import os
import uuid as uuid_lib
from dataclasses import dataclass
from typing import Sequence

from agent.errors import StartupError
from agent.files import ensure_directory, is_writable_by_others, write_atomically

LOG = logging.getLogger(__name__)

COMPUTE_ID_FILE = "compute_id"

_NOTHING_DONE = "refusing to start (nothing was destroyed or written)"


@dataclass(frozen=True)
class NodeIdentity:
    uuid: str
    nodename: str
    row_exists: bool     # the compute_nodes row is already there
    write_file: bool     # the file must be (re)written once the row exists


@dataclass(frozen=True)
class KnownNode:
    """A live compute_nodes row as the identity check sees it."""

    uuid: str
    host: str
    hypervisor_hostname: str


def check_identity(*, host: str, nodename: str, file_uuid: str | None, file_path: str,
                   rows: Sequence[KnownNode], new_uuid: str) -> NodeIdentity:
    """Decide this node's identity (see the module table). `rows` must hold every live row of
    `host`, with uuid `file_uuid` and with hypervisor hostname `nodename`. Raises StartupError,
    naming the file, the uuids, the hosts and what to do, when start-up must stop."""
    here = next((r for r in rows if r.host == host and r.hypervisor_hostname == nodename), None)
    if file_uuid is None:
        known = here or next((r for r in rows if r.hypervisor_hostname == nodename), None)
        if known is not None:
            raise StartupError(_lost_identity_message(host, nodename, file_path, known))
        return NodeIdentity(new_uuid, nodename, row_exists=False, write_file=True)
    if here is not None:
        if here.uuid != file_uuid:
            raise StartupError(
                f"node identity mismatch: {file_path} says this node is {file_uuid}, but "
                f"the database has node {here.uuid} for host {host!r}, hypervisor "
                f"{nodename!r}; {_NOTHING_DONE}. Restore the right state directory or fix the "
                "compute_nodes row")
        return NodeIdentity(file_uuid, nodename, row_exists=True, write_file=False)
    owner = next((r for r in rows if r.uuid == file_uuid), None)
    if owner is not None:
        what = ("host was renamed" if owner.host != host
                else "hypervisor hostname changed")
        raise StartupError(
            f"node identity mismatch: {file_path} says this node is {file_uuid}, which the "
            f"database has as host {owner.host!r}, hypervisor {owner.hypervisor_hostname!r}, "
            f"but this agent runs as host {host!r}, hypervisor {nodename!r} (the {what}?); "
            f"{_NOTHING_DONE}. Start with the old name, or delete the old service first "
            f"('agent services delete --host {owner.host}')")
    check_hypervisor_free(host=host, nodename=nodename, rows=rows)
    return NodeIdentity(file_uuid, nodename, row_exists=False, write_file=False)


def check_hypervisor_free(*, host: str, nodename: str, rows: Sequence[KnownNode]) -> None:
    """Raise StartupError when another host has a live node for hypervisor `nodename`: one
    hypervisor is one node, never two rows under two hosts."""
    other = next((r for r in rows if r.hypervisor_hostname == nodename and r.host != host), None)
    if other is not None:
        raise StartupError(
            f"hypervisor {nodename!r} is already registered as node {other.uuid} of host "
            f"{other.host!r}, and this agent runs as host {host!r}; {_NOTHING_DONE}. Run the "
            f"agent as host {other.host!r} with that node's state directory, or, if host "
            f"{other.host!r} is gone for good, delete it first ('agent services delete --host "
            f"{other.host}')")


def _lost_identity_message(host: str, nodename: str, file_path: str, known: KnownNode) -> str:
    restore = f"printf '%s\\n' {known.uuid} > {file_path}"
    if known.host == host:
        where = f"host {host!r}"
        then = "then start again"
    else:
        where = f"host {known.host!r} (this agent runs as host {host!r})"
        then = f"then start it as host {known.host!r}"
    return (f"{file_path} is missing, but the database has node {known.uuid} for hypervisor "
            f"{nodename!r} under {where}; {_NOTHING_DONE}. If this is that node and its state "
            f"directory was lost, restore its identity ({restore}) and {then}; if that node is "
            f"gone for good, delete its service first ('agent services delete --host "
            f"{known.host}')")


class NodeIdentityStore:
    """The compute_id file under state_path."""

    def __init__(self, state_path: str):
        self.path = os.path.join(state_path, COMPUTE_ID_FILE)

    def read(self) -> str | None:
        """The uuid in the file, None when there is none. A StartupError names the file when it
        cannot be read or holds no uuid, and the directory when any user may write to it (a
        planted compute_id would decide what start-up destroys)."""
        directory = os.path.dirname(self.path)
        if is_writable_by_others(directory):
            raise StartupError(f"{directory}: the state directory is writable by every user "
                               f"(mode {os.stat(directory).st_mode & 0o7777:04o}), so its node "
                               f"identity cannot be trusted; run 'chmod o-w {directory}' (the "
                               "agent creates it 0750)")
        try:
            with open(self.path, "rb") as fh:
                text = fh.read(4096).decode("utf-8", errors="replace").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StartupError(f"{self.path}: cannot read the node identity: "
                               f"{exc.strerror or exc}") from None
        try:
            return str(uuid_lib.UUID(text))
        except ValueError:
            raise StartupError(f"{self.path}: not a uuid: {text[:60]!r}; the node identity "
                               "file must hold one uuid") from None

    def write(self, node_uuid: str) -> None:
        """Atomically, mode 0640, state_path created 0750 if missing (`agent.files`): a new
        temporary file created exclusively, synced and renamed over the old one. A failure is a
        StartupError naming the file; the old file is left as it was."""
        try:
            ensure_directory(os.path.dirname(self.path))
            write_atomically(self.path, node_uuid + "\n")
        except OSError as exc:
            raise StartupError(f"{self.path}: cannot write the node identity: "
                               f"{exc.strerror}") from None
        LOG.info("node identity %s written to %s", node_uuid, self.path)


def new_node_uuid() -> str:
    return str(uuid_lib.uuid4())
