"""The resource tracker: one compute_nodes row per node the driver reports, with usage computed
from the database (usage.py), saved only when something besides updated_at changed.

One audit costs a constant number of statements: one read of this host's nodes, one of its
(and its migrations') instances, one of its migrations, then for each new node one INSERT (after
the UPDATE that would bring back the node's soft-deleted row) and one executemany UPDATE of the
changed nodes. Nodes the driver stopped reporting are warned
about, never deleted. The plan is pure (audit.py); on a read-only database (a dry run) the rows
that would be written are reported as 'would-create' / 'would-update' and nothing is written.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from sqlalchemy.exc import IntegrityError

from agent.compute.audit import (CREATE, UNCHANGED, UPDATE, AuditResult,  # noqa: F401
                                 NodePlan, NodeReport,
                                 node_values, plan_audit, tracked_instance)
from agent.compute.node_identity import (KnownNode, NodeIdentity, NodeIdentityStore,
                                         check_hypervisor_free, check_identity, new_node_uuid)
from agent.db import compute_queries as q
from agent.display import plural
from agent.errors import ServiceError
from agent.virt.driver import ComputeDriver

LOG = logging.getLogger(__name__)


class ResourceTracker:
    """Audits this host's nodes."""

    def __init__(self, conf, db, driver: ComputeDriver, *, service_id: int | None,
                 host: str | None = None, identity_store: NodeIdentityStore | None = None):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.service_id = service_id
        self.host = host or conf.host
        self.identity_store = identity_store or NodeIdentityStore(conf.state_path)
        self.identities: dict[str, NodeIdentity] = {}
        self.last_audit: AuditResult | None = None

    # -- node identity ------------------------------------------------------------------------
    def check_node_identity(self) -> dict[str, NodeIdentity]:
        """Check the compute_id file against the database (one read). Raises StartupError when
        the host was renamed, the identity does not match or is lost, or a hypervisor is
        registered by another host. The file names the host's first node (libvirt and fakevirt
        have exactly one). Writes nothing."""
        nodes = self.driver.get_available_nodes()
        file_uuid = self.identity_store.read()
        with self.db.sessions() as session:
            rows = q.load_identity_nodes(session, self.host, [file_uuid] if file_uuid else [],
                                         nodes)
        known = [KnownNode(r.uuid, r.host, r.hypervisor_hostname) for r in rows]
        identities = {}
        for index, nodename in enumerate(nodes):
            if index == 0:
                identities[nodename] = check_identity(
                    host=self.host, nodename=nodename, file_uuid=file_uuid,
                    file_path=self.identity_store.path, rows=known, new_uuid=new_node_uuid())
            else:
                check_hypervisor_free(host=self.host, nodename=nodename, rows=known)
                here = next((r for r in known if r.host == self.host
                             and r.hypervisor_hostname == nodename), None)
                identities[nodename] = NodeIdentity(here.uuid if here else new_node_uuid(),
                                                    nodename, here is not None, False)
        self.identities = identities
        for ident in identities.values():
            LOG.info("node %s: identity %s (%s)", ident.nodename, ident.uuid,
                     "known" if ident.row_exists else "new node")
        return identities

    @property
    def node_uuid(self) -> str | None:
        """The uuid the compute_id file holds (or will hold): the first node's, once
        check_node_identity has run."""
        first = next(iter(self.identities.values()), None)
        return first.uuid if first is not None else None

    def persist_identity(self) -> None:
        """Write the compute_id file of a new node now, before the service row carries its
        uuid: a restart then finds the identity its last beat was sent with. (A dry run
        registers nothing and never gets here.)"""
        for nodename, ident in list(self.identities.items()):
            if ident.write_file:
                self.identity_store.write(ident.uuid)
                self.identities[nodename] = dataclasses.replace(ident, write_file=False)

    # -- the audit ----------------------------------------------------------------------------
    def update_available_resource(self, startup: bool = False) -> AuditResult:
        """Audit every node the driver reports: read (the driver, then one transaction of
        reads), plan (`audit.plan_audit`, pure), write the rows that changed, report. Raises on
        failure (at start-up the agent stops; the periodic job logs it and goes on)."""
        nodes = self.driver.get_available_nodes()
        if not self.identities or any(n not in self.identities for n in nodes):
            self.check_node_identity()
        guests = self.driver.list_instances()
        resources = {n: self.driver.get_available_resource(n) for n in nodes}
        with self.db.sessions() as session:
            rows = q.load_compute_nodes(session, self.host,
                                        [i.uuid for i in self.identities.values()])
            instances = q.load_tracked_instances(session, self.host)
            migrations = q.load_host_migrations(session, self.host)
        for nodename in nodes:
            res = resources[nodename]
            LOG.debug("node %s, hypervisor view: %s vCPUs used, %s MB used, %s GB used",
                      nodename, res.vcpus_used, res.memory_mb_used, res.local_gb_used)
        tracked = [tracked_instance(r) for r in instances]
        plans = plan_audit(self.conf, host=self.host, service_id=self.service_id, nodes=nodes,
                           identities=self.identities, resources=resources, rows=rows,
                           tracked=tracked, migrations=migrations)
        written = self._save_nodes(plans)
        if written:
            self._persist_identities()
        reports = tuple(NodeReport(p.uuid, p.nodename, p.values, p.stats,
                                   p.action if written or p.action == UNCHANGED
                                   else "would-" + p.action[:-1], p.free) for p in plans)
        orphans = tuple(r.hypervisor_hostname for r in rows
                        if r.host == self.host and r.hypervisor_hostname not in nodes)
        for name in orphans:
            LOG.warning("compute node %s of host %s is in the database but the driver no "
                        "longer reports it: kept (delete it by hand if it is gone for good)",
                        name, self.host)
        known = {t.uuid for t in tracked}
        unknown = tuple(g.uuid for g in guests if g.uuid not in known)
        for report in reports:
            LOG.info("audit%s of node %s: %s vCPUs used of %s, %s MB used of %s, %s GB used of "
                     "%s, %s; row %s", " (start-up)" if startup else "",
                     report.hypervisor_hostname, report.values["vcpus_used"],
                     report.values["vcpus"], report.values["memory_mb_used"],
                     report.values["memory_mb"], report.values["local_gb_used"],
                     report.values["local_gb"], plural(report.values["running_vms"], "instance"),
                     report.saved)
        self.last_audit = AuditResult(reports, orphans, unknown)
        return self.last_audit

    def _check_service_live(self, session) -> None:
        """Before a node row is created or brought back: the service it belongs to must still
        be registered. After 'agent services delete' a running agent leaves its node deleted
        (as its heartbeat leaves the service), until a restart registers both again."""
        if not q.is_service_live(session, self.service_id):
            raise ServiceError(
                f"the service of host {self.host} (id {self.service_id}) was deleted from the "
                "service registry: its compute node is not created again for a deleted service; "
                "restart the agent to register this host again")

    def _save_nodes(self, plans: Sequence[NodePlan]) -> bool:
        """Write the new and changed node rows in one transaction. False when the database
        took no write (read-only: a dry run); True otherwise, also when nothing changed."""
        inserts = [(p.uuid, p.values) for p in plans if p.action == CREATE]
        updates = [(p.row_id, p.values) for p in plans if p.action == UPDATE]
        if not inserts and not updates:
            return True
        written = True
        try:
            with self.db.sessions.begin() as session:
                if inserts and self.service_id is not None:
                    self._check_service_live(session)
                for node_uuid, values in inserts:
                    done = q.create_compute_node(session, node_uuid, values)
                    if done == q.NOT_WRITTEN:
                        written = False
                    elif done == "revived":
                        LOG.info("compute node %s (%s) was deleted with its service; it "
                                 "is live again", node_uuid, values["hypervisor_hostname"])
                written = q.update_compute_nodes(session, updates) and written
        except IntegrityError:
            if not inserts:
                raise
            # Another host registered one of these hypervisors since the identity check
            # (one live row per hypervisor hostname): the check, run again, names it.
            self.check_node_identity()
            raise
        return written

    def _persist_identities(self) -> None:
        for nodename, ident in list(self.identities.items()):
            if ident.write_file:
                self.identity_store.write(ident.uuid)
            self.identities[nodename] = NodeIdentity(ident.uuid, nodename, True, False)

