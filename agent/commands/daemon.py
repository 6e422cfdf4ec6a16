"""The default command: run the agent until SIGTERM or SIGINT (or once, with --once)."""

from __future__ import annotations

import logging
import os
import sys

LOG = logging.getLogger(__name__)


def compute_host_work(conf, db, service, dry_run):
    """The host work the agent runs (AgentService's `host_work_factory`, for the daemon,
    `--once`, and a caller running the agent's start-up in process): the virt driver, the
    firewall, the compute manager and the resource tracker. Imported here, after the first
    beat: the compute side pulls in the driver and its libraries, which must not delay the
    heartbeat.

    A dry run is the same host work built on parts that change nothing: the real driver behind
    a recording one (reads go through, changes are logged), the firewall's commands through a
    DryRunExecutor (the kernel's tables are read, never restored), and `db`, which the agent
    opened read-only (the conditional saves report and write nothing)."""
    from agent.compute.host import ComputeHost

    if not dry_run:
        return ComputeHost(conf, db, service)
    from agent.network.executor import DryRunExecutor, SubprocessExecutor
    from agent.network.firewall import load_firewall
    from agent.virt.loader import load_driver
    from agent.virt.recording import RecordingDriver

    return ComputeHost(conf, db, service, driver=RecordingDriver(load_driver(conf)),
                       firewall=load_firewall(conf, DryRunExecutor(SubprocessExecutor())))


def run(args, conf) -> int:
    from agent.log import setup_logging
    from agent.service import AgentService

    setup_logging(conf.debug, conf.log_file, conf.secrets(),
                  conf.where("DEFAULT", "log_file"))
    for warning in conf.warnings:
        LOG.warning("%s", warning)
    service = AgentService(conf, dry_run=getattr(args, "dry_run", False),
                           host_work_factory=compute_host_work)
    if getattr(args, "once", False):
        report = service.run_once()
        sys.stdout.write(render_report(report, getattr(args, "format", "table")))
        sys.stdout.flush()
        return 0
    status = service.run()
    if not service.clean_exit:
        # A job or the host work did not stop in time: its thread would hold the interpreter's
        # exit (thread pools are joined at exit), so leave without waiting for it.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(status)
    return status


def render_report(report, fmt: str) -> str:
    """The --once report as text: JSON or a readable table."""
    from agent.service_report import ServiceReport

    if isinstance(report, ServiceReport):
        return report.render(fmt)
    from agent import inventory

    return inventory.to_json(report) if fmt == "json" else inventory.format_table(report)
