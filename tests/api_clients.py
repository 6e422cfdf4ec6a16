"""The real compute clients against a running `agent api` and a running agent on fakevirt:
shared by the end-to-end tests of the API (tests/e2e/test_api_*clients.py).

The clients (openstackclient, novaclient, openstacksdk) are installed by `./dev.sh setup` in
.venv-clients, apart from the agent's dependencies; they run with the command lines of the
interface reference (`--os-auth-type none`, the endpoint given) and an otherwise empty OS_*
environment, since a stray OS_PROJECT_ID or OS_USERNAME breaks the `none` plugin.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

from tests.agent_process import (DEADLINE, REPO_ROOT, AgentProcess, ready_agent, service_row,
                                 wait_for, write_config)
from tests.conftest import require_tier

CLIENTS = REPO_ROOT / ".venv-clients" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def require_clients() -> None:
    require_tier("clients", (CLIENTS / "openstack").exists() and (CLIENTS / "nova").exists(),
                 f"{CLIENTS} has no openstack/nova: run ./dev.sh setup")


@contextlib.contextmanager
def api_stack(directory: Path, host: str, **options: object) -> Iterator[dict]:
    """A running agent daemon (fakevirt, SQLite in `directory`) past READY=1 (start-up done:
    its queue declared, its first audit's compute node saved) with its service up, and
    `agent api` on a free loopback port over the same configuration (`options`: further
    [DEFAULT] options, e.g. transport_url; `scenario`: fakevirt's scenario file;
    `api_options`: a dict of [api] options, e.g. {"max_limit": 2}). Yields {"endpoint",
    "url" (the database), "home" (the clients' HOME and cwd), "config", "agent", "api"}; both
    processes are stopped on exit."""
    require_clients()
    scenario = options.pop("scenario", None)
    api_options = options.pop("api_options", {})
    options.setdefault("service_down_time", 60)
    config = write_config(directory, host=host, scenario=scenario, **options)
    if api_options:
        with config.open("a", encoding="utf-8") as conf:
            conf.write("\n[api]\n" + "".join(f"{k} = {v}\n" for k, v in api_options.items()))
    url = f"sqlite:///{directory}/state/agent.sqlite"
    with ready_agent(config, directory) as agent:
        assert wait_for(lambda: (row := service_row(url, host)) and row.last_seen_up), \
            agent.log_text()
        port = free_port()
        api = AgentProcess(config, directory / "api.log",
                           args=["api", "--bind", f"127.0.0.1:{port}"])
        try:
            endpoint = f"http://127.0.0.1:{port}/v2.1"
            assert wait_for(lambda: answers(endpoint)), api.log_text()
            yield {"endpoint": endpoint, "url": url, "home": directory, "config": config,
                   "api": api, "agent": agent}
        finally:
            api.stop()


def run(stack: dict, argv: list[str], env=()) -> subprocess.CompletedProcess:
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(stack["home"]), **dict(env)}
    return subprocess.run(argv, capture_output=True, text=True, env=environment,
                          timeout=DEADLINE * 3, cwd=str(stack["home"]))


def openstack(stack: dict, *args: str, version: str | None = None) -> subprocess.CompletedProcess:
    """`openstack --os-auth-type none --os-endpoint <api> [--os-compute-api-version V] ...`"""
    version_args = ["--os-compute-api-version", version] if version else []
    return run(stack, [str(CLIENTS / "openstack"), "--os-auth-type", "none", "--os-endpoint",
                       stack["endpoint"], *version_args, *args])


def nova(stack: dict, *args: str) -> subprocess.CompletedProcess:
    """novaclient's `nova` without keystone: the `none` plugin still wants a user, a project
    and an auth URL in the environment (never contacted)."""
    return run(stack, [str(CLIENTS / "nova"), "--os-auth-type", "none",
                       "--os-endpoint-override", stack["endpoint"], *args],
               env={"OS_USERNAME": "x", "OS_PROJECT_ID": "p",
                    "OS_AUTH_URL": "http://127.0.0.1:9/"})


def sdk(stack: dict, script: str, *args: str) -> subprocess.CompletedProcess:
    """A Python `script` (`args` in its sys.argv[1:]) run by .venv-clients' interpreter with
    a clouds.yaml naming the API as cloud 'local' (`openstack.connect(cloud='local')`)."""
    clouds = stack["home"] / "clouds.yaml"
    clouds.write_text("clouds:\n  local:\n    auth_type: none\n"
                      f"    auth:\n      endpoint: {stack['endpoint']}\n", encoding="utf-8")
    return run(stack, [str(CLIENTS / "python"), "-c", script, *args],
               env={"OS_CLIENT_CONFIG_FILE": str(clouds)})
