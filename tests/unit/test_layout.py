"""The package's import graph: no cycles (imports inside functions count), and no lower layer reaches up into
the loop or the context builder."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
TOP = ("optune.runner.loop", "optune.runner.prepare", "optune.api", "optune.cli", "optune.__main__")


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in (SRC / "optune").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_lower_layer_imports_the_loop_or_the_context_builder():
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith(TOP) or name == "optune":
            continue
        upward = {e for e in edges if e.startswith(TOP)}
        assert not upward, f"{name} imports {upward}"


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """optune.X.y -> optune.X: which top-level packages and modules import which."""
    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = {}
    for name, edges in graph.items():
        out.setdefault(top(name), set()).update(top(e) for e in edges if top(e) != top(name))
    return out


def test_no_two_packages_import_each_other():
    """The one pair allowed is config and reward, layered by module: config.schema and config.keys (the YAML and
    override machinery) sit below reward.config (the run's reward section), which sits below config.run."""
    graph = import_graph()
    packages = package_graph(graph)
    ties = {(a, b) for a, deps in packages.items() for b in deps if a in packages.get(b, ()) and a < b}
    assert ties <= {("optune.config", "optune.reward")}, ties
    into_config = {e for name, edges in graph.items() if name.startswith("optune.reward.") for e in edges
                   if e.startswith("optune.config")}
    assert into_config <= {"optune.config.schema", "optune.config.keys"}, into_config
    for low in into_config:
        assert not {e for e in graph[low] if e.startswith("optune.reward")}, low


def test_what_scores_or_stores_imports_no_stage():
    packages = package_graph(import_graph())
    stages = {"optune.pairs", "optune.training", "optune.runner", "optune.generation", "optune.eval",
              "optune.rewardmodel", "optune.api", "optune.cli"}
    for low in ("optune.reward", "optune.store", "optune.losses", "optune.selection", "optune.clock"):
        assert not packages.get(low, set()) & stages, (low, packages[low] & stages)


def test_at_most_twelve_top_level_modules():
    """Concepts get a subpackage; the top level keeps the few modules every layer shares."""
    top = sorted(p.stem for p in (SRC / "optune").glob("*.py") if not p.stem.startswith("__"))
    assert len(top) <= 12, top
