"""The structure drawn from the code: every import of the agent's packages (module-level, inside
functions and under TYPE_CHECKING alike) goes to the same floor or a lower one, and no chain of
imports comes back to where it started.

Floors, lowest first:
  0 foundation  words and tools every layer uses: agent.vocabulary, errors, config, display,
                the request context, ...
  1 parts       the database (agent.db), the hypervisor (agent.virt, fakevirt), the firewall
                (agent.network), the periodic job runner, the message transport (agent.rpc)
  2 domain      the service registry and liveness, the compute host's work (agent.compute), the
                control plane (agent.control)
  3 process     the agent's lifecycle (agent.service), the fleet, the API (agent.api)
  4 entry       the command line
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "fakevirt")

# The floor of each package or module: the longest matching prefix decides.
FLOORS = {
    "agent": 0, "agent.vocabulary": 0, "agent.errors": 0, "agent.display": 0,
    "agent.redact": 0, "agent.files": 0, "agent.progress": 0, "agent.options": 0,
    "agent.config": 0, "agent.log": 0, "agent.failure_log": 0, "agent.cli_help": 0,
    "agent.systemd": 0, "agent.values": 0, "agent.context": 0,
    "agent.db": 1, "agent.virt": 1, "fakevirt": 1, "agent.network": 1, "agent.periodic": 1,
    "agent.rpc": 1, "agent.rpc.transport": 0,
    "agent.liveness": 2, "agent.service_owner": 2, "agent.registry": 2, "agent.heartbeat": 2,
    "agent.compute": 2, "agent.control": 2, "agent.inventory": 2, "agent.service_report": 2,
    "agent.host_work": 3, "agent.service": 3, "agent.fleet": 3, "agent.startup": 3, "agent.api": 3,
    "agent.cli": 4, "agent.commands": 4, "agent.__main__": 4, "agent.sample_config": 4,
}
FLOOR_NAMES = ("foundation", "parts", "domain", "process", "entry")


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The agent module an imported name lives in (`from agent import registry` is the module
    agent.registry; `from agent.db.models import Service` is agent.db.models)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(r for r in map(_resolve, names) if r is not None and r != module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def floor_of(module: str) -> int:
    name = module
    while name not in FLOORS:
        if "." not in name:
            raise KeyError(module)
        name = name.rpartition(".")[0]
    if name == "agent" and module != "agent":
        raise KeyError(module)  # a top-level module must be placed explicitly
    return FLOORS[name]


def test_every_module_has_a_floor():
    unplaced = sorted(m for m in MODULES if _floor_or_none(m) is None)
    assert not unplaced, (f"modules with no floor: {unplaced}; add them to FLOORS in "
                          f"{pathlib.Path(__file__).name}")


def _floor_or_none(module: str) -> int | None:
    try:
        return floor_of(module)
    except KeyError:
        return None


def test_no_import_runs_up_a_floor():
    upward = sorted(
        f"{module} ({FLOOR_NAMES[floor_of(module)]}) imports {target} "
        f"({FLOOR_NAMES[floor_of(target)]})"
        for module, targets in GRAPH.items() if _floor_or_none(module) is not None
        for target in targets
        if _floor_or_none(target) is not None and floor_of(target) > floor_of(module))
    assert not upward, "imports running up a floor:\n" + "\n".join(upward)


def test_db_imports_nothing_from_compute_or_above():
    offending = sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                       if m == "agent.db" or m.startswith("agent.db.")
                       for t in targets if not (t.startswith("agent.db") or floor_of(t) == 0))
    assert not offending, "\n".join(offending)


def _package_of(module: str, packages: tuple[str, ...]) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


# The control plane is shared by the command line and the API and is handed its RPC client
# (control.casts.Caster): it imports neither of them nor the transport below the client.
ABOVE_CONTROL = ("agent.rpc", "agent.api", "agent.commands", "agent.cli")


def test_control_imports_nothing_from_rpc_api_or_commands():
    offending = sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                       if _package_of(m, ("agent.control",))
                       for t in targets if _package_of(t, ABOVE_CONTROL))
    assert not offending, "\n".join(offending)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("graph, expected", [
    pytest.param({"a": {"b"}, "b": {"c"}, "c": set()}, [], id="chain"),
    pytest.param({"a": {"b"}, "b": {"a"}}, [["a", "b"]], id="pair"),
    pytest.param({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]],
                 id="triangle-with-tail"),
])
def test_cycle_finder(graph, expected):
    assert _cycles(graph) == expected


def test_the_walk_sees_imports_inside_functions():
    # agent.commands.services imports the control plane only when a command runs.
    assert any(t.startswith("agent.db") or t.startswith("agent.control")
               for t in GRAPH["agent.commands.services"])


def test_operation_code_never_sees_a_dry_run_flag():
    """A dry run is a recording driver, a firewall that restores nothing and a read-only
    database: the compute and network code runs the same either way."""
    found = [f"{path.relative_to(ROOT)}:{number}"
             for package in ("agent/compute", "agent/network")
             for path in sorted((ROOT / package).rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if "dry_run" in line]
    assert found == []
