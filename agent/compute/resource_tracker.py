"""The resource tracker: one compute_nodes row per node the driver reports, with usage computed
from the database (usage.py), saved only when something besides updated_at changed.

One audit costs a constant number of statements: one read of this host's nodes, one of its
(and its migrations') instances, one of its migrations, then for each new node one INSERT (after
the UPDATE that would bring back the node's soft-deleted row) and one executemany UPDATE of the
changed nodes. Nodes the driver stopped reporting are warned
about, never deleted. In a dry run the rows that would be written are reported, not written.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Mapping

from sqlalchemy.exc import IntegrityError

from agent.compute.node_identity import (KnownNode, NodeIdentity, NodeIdentityStore,
                                         check_hypervisor_free, check_identity, new_node_uuid)
from agent.compute.usage import (Flavor, Reserved, TrackedInstance, TrackedMigration,
                                 allocation_ratio, compute_usage, instances_on_node)
from agent.db import compute_queries as q
from agent.display import plural
from agent.errors import ServiceError
from agent.virt.driver import ComputeDriver
from agent.virt.types import HostResources

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeReport:
    """A node after an audit: nova's compute-node fields, and what the audit did to the row
    ('created', 'updated', 'unchanged'; in a dry run 'would-create', 'would-update')."""

    uuid: str
    hypervisor_hostname: str
    values: Mapping[str, object]
    stats: Mapping[str, str]
    saved: str


@dataclass(frozen=True)
class AuditResult:
    nodes: tuple[NodeReport, ...]
    orphan_nodes: tuple[str, ...] = ()
    unknown_domains: tuple[str, ...] = ()  # uuids of guests no live instance row knows


def tracked_instance(rec: q.InstanceRecord) -> TrackedInstance:
    return TrackedInstance(
        uuid=rec.uuid, host=rec.host, node=rec.node, vm_state=rec.vm_state,
        task_state=rec.task_state,
        flavor=Flavor(rec.vcpus, rec.memory_mb, rec.root_gb, rec.ephemeral_gb, rec.swap),
        project_id=rec.project_id, os_type=rec.os_type,
        old_flavor=Flavor.from_json(rec.old_flavor), new_flavor=Flavor.from_json(rec.new_flavor))


def tracked_migration(rec: q.MigrationRecord) -> TrackedMigration:
    return TrackedMigration(rec.id, rec.instance_uuid, rec.source_compute, rec.dest_compute,
                            rec.source_node, rec.dest_node, rec.migration_type, rec.status,
                            rec.created_at)


def node_values(conf, res: HostResources, usage, service_id: int | None, host: str,
                stored: Mapping[str, object] | None) -> dict[str, object]:
    """Every tracker-owned column of the node's row (pure)."""
    stored = stored or {}
    return {
        "service_id": service_id, "host": host, "hypervisor_hostname": res.hypervisor_hostname,
        "vcpus": res.vcpus, "memory_mb": res.memory_mb, "local_gb": res.local_gb,
        "vcpus_used": usage.vcpus_used, "memory_mb_used": usage.memory_mb_used,
        "local_gb_used": usage.local_gb_used, "free_ram_mb": usage.free_ram_mb,
        "free_disk_gb": usage.free_disk_gb, "disk_available_least": res.disk_available_least,
        "current_workload": usage.current_workload, "running_vms": usage.running_vms,
        "hypervisor_type": res.hypervisor_type, "hypervisor_version": res.hypervisor_version,
        "cpu_info": res.cpu_info or "", "stats": q.stats_json(usage.stats),
        "host_ip": conf.my_ip,
        "cpu_allocation_ratio": allocation_ratio(conf.cpu_allocation_ratio,
                                                 stored.get("cpu_allocation_ratio"),
                                                 conf.initial_cpu_allocation_ratio),
        "ram_allocation_ratio": allocation_ratio(conf.ram_allocation_ratio,
                                                 stored.get("ram_allocation_ratio"),
                                                 conf.initial_ram_allocation_ratio),
        "disk_allocation_ratio": allocation_ratio(conf.disk_allocation_ratio,
                                                  stored.get("disk_allocation_ratio"),
                                                  conf.initial_disk_allocation_ratio),
    }


class ResourceTracker:
    """Audits this host's nodes."""

    def __init__(self, conf, db, driver: ComputeDriver, *, service_id: int | None,
                 host: str | None = None, identity_store: NodeIdentityStore | None = None,
                 dry_run: bool = False):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.service_id = service_id
        self.host = host or conf.host
        self.identity_store = identity_store or NodeIdentityStore(conf.state_path)
        self.dry_run = dry_run
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
        """Write the compute_id file of a new node now (not in a dry run), before the service
        row carries its uuid: a restart then finds the identity its last beat was sent with."""
        if self.dry_run:
            return
        for nodename, ident in list(self.identities.items()):
            if ident.write_file:
                self.identity_store.write(ident.uuid)
                self.identities[nodename] = dataclasses.replace(ident, write_file=False)

    # -- the audit ----------------------------------------------------------------------------
    def update_available_resource(self, startup: bool = False) -> AuditResult:
        """Audit every node the driver reports. Raises on failure (at start-up the agent
        stops; the periodic job logs it and goes on)."""
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
        tracked = [tracked_instance(r) for r in instances]
        by_uuid = {t.uuid: t for t in tracked}
        migs = [tracked_migration(m) for m in migrations]
        reserved = Reserved(self.conf.reserved_host_memory_mb, self.conf.reserved_host_disk_mb,
                            self.conf.reserved_host_cpus)
        reports, inserts, updates = [], [], []
        for nodename in nodes:
            res = resources[nodename]
            LOG.debug("node %s, hypervisor view: %s vCPUs used, %s MB used, %s GB used",
                      nodename, res.vcpus_used, res.memory_mb_used, res.local_gb_used)
            ident = self.identities[nodename]
            row = next((r for r in rows if r.uuid == ident.uuid), None)
            usage = compute_usage(
                memory_mb=res.memory_mb, local_gb=res.local_gb,
                node_instances=instances_on_node(tracked, self.host, nodename,
                                                 only_node=len(nodes) == 1),
                migrations=migs, instances_by_uuid=by_uuid, host=self.host, nodename=nodename,
                reserved=reserved, driver_stats=res.stats)
            values = node_values(self.conf, res, usage, self.service_id, self.host,
                                 row.values if row else None)
            if row is None:
                inserts.append((ident.uuid, values))
                saved = "created"
            elif dict(row.values) != values:
                updates.append((row.id, values))
                saved = "updated"
            else:
                saved = "unchanged"
            if self.dry_run and saved != "unchanged":
                saved = "would-" + saved[:-1]
            reports.append(NodeReport(ident.uuid, nodename, values, usage.stats, saved))
        if not self.dry_run and (inserts or updates):
            try:
                with self.db.sessions.begin() as session:
                    if inserts and self.service_id is not None:
                        self._check_service_live(session)
                    for node_uuid, values in inserts:
                        if q.create_compute_node(session, node_uuid, values) == "revived":
                            LOG.info("compute node %s (%s) was deleted with its service; it "
                                     "is live again", node_uuid, values["hypervisor_hostname"])
                    q.update_compute_nodes(session, updates)
            except IntegrityError:
                if not inserts:
                    raise
                # Another host registered one of these hypervisors since the identity check
                # (one live row per hypervisor hostname): the check, run again, names it.
                self.check_node_identity()
                raise
        if not self.dry_run:
            self._persist_identities()
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
        self.last_audit = AuditResult(tuple(reports), orphans, unknown)
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

    def _persist_identities(self) -> None:
        for nodename, ident in list(self.identities.items()):
            if ident.write_file:
                self.identity_store.write(ident.uuid)
            self.identities[nodename] = NodeIdentity(ident.uuid, nodename, True, False)

