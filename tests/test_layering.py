"""Imports go one way: no module of minigrad imports (at module level) one that imports it back."""
import ast
import pathlib

import minigrad

ROOT = pathlib.Path(minigrad.__file__).parent


def _module_name(path):
    parts = ("minigrad",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph():
    """{module: modules of minigrad it imports when it is imported}. Imports inside functions run
    later, on a call, and are not edges; `from pkg import name` is an edge to pkg.name when that is
    a module, else to pkg (whose __init__ must run first)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for stmt in ast.parse(path.read_text()).body:
            for node in ast.walk(stmt) if isinstance(stmt, (ast.If, ast.Try)) else (stmt,):
                if isinstance(node, ast.Import):
                    edges.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                    target = ".".join(base + ([node.module] if node.module else []))
                    for a in node.names:
                        edges.add(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _cycles(graph):
    cycles, state = [], {}

    def visit(u, path):
        state[u] = "open"
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                cycles.append(path[path.index(v):] + [v])
            elif v not in state:
                visit(v, path)
        path.pop()
        state[u] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return cycles


def test_the_module_graph_finds_edges():
    graph = _import_graph()
    assert "minigrad.autograd" in graph["minigrad.tensor"]
    assert "minigrad.autograd" in graph["minigrad.ops.elementwise"]
    assert "minigrad.gradcheck" not in graph["minigrad.autograd"]  # looked up lazily, on first use
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

