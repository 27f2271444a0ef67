"""The house rules of ../shared/DESIGN.md, read from the source with `ast` (nothing is imported).

Every `import` counts, at module level or inside a function: a function-level import is allowed
for start-up time (the CLI, optional extras), never to hide a cycle, so it obeys the same room
rules and takes part in the same cycle check as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "offrl"

# Modules every room may import: they belong to no room.
BASE = {"types", "errors", "atomic", "version"}
# Rooms below the line (used by the engines), each with the rooms it may import besides itself.
BELOW = {
    "nets": set(),
    "models": {"nets"},
    "algos": {"nets", "models"},
    "data": {"envs"},
    "envs": set(),
    "evaluate": {"envs", "data", "nets"},
    "train": {"algos", "nets", "models", "data", "envs", "evaluate"},
}
# Rooms above the line read run directories or drive the engines: any room below, and each other
# as long as no two of them import each other (the cycle test).
ABOVE = {"sweep", "bench", "report", "suites", "export", "ope"}
# The pure layout helpers of `data/` that algorithms may use in their training_data/sample hooks.
ALGOS_MAY_IMPORT = {"offrl.data.sequences", "offrl.data.transforms", "offrl.data.returns",
                    "offrl.data.cost_return_augmentation"}  # CDT's training_data relabels episodes


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str:
    """The offrl module an imported name loads: itself if it is a module, else its package."""
    while name not in MODULES:
        name = name.rsplit(".", 1)[0]
    return name


def offrl_imports(module: str, source: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported offrl module, line, inside a function?) for every import statement in `module`
    (its file, or `source` when given)."""
    path = MODULES.get(module)
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path or module))
    package = module if path is not None and path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((resolve(alias.name), child.lineno, in_function)
                             for alias in child.names if alias.name.split(".")[0] == "offrl")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.split(".")[0] != "offrl":
                    continue
                for alias in child.names:  # `from offrl.algos import td3_bc` loads the submodule
                    target = f"{base}.{alias.name}"
                    found.append((target if target in MODULES else resolve(base), child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def room(module: str) -> str:
    """'offrl.train.offline' -> 'train'; top-level modules are their own room; the package is 'offrl'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "offrl"


def allowed(importer: str, imported: str) -> bool:
    source, target = room(importer), room(imported)
    if target == "cli":
        return False  # nothing imports the command line
    if source == target or target in BASE or source in ("cli", "offrl"):
        return True
    if target == "offrl":
        return False  # the package re-exports rooms; a room importing it would import them back
    if source in BASE:
        return False
    if source in ABOVE:
        return True  # rooms below, and other rooms above (the cycle test keeps that one-way)
    if source == "algos" and imported in ALGOS_MAY_IMPORT:
        return True
    if source not in BELOW:
        return False  # a new room must be placed on the map (DESIGN.md) before it imports anything
    return target in BELOW[source]


EDGES = {module: offrl_imports(module) for module in MODULES}


def test_every_room_is_on_the_map():
    rooms = {room(module) for module in MODULES}
    unknown = rooms - set(BELOW) - ABOVE - BASE - {"cli", "offrl"}
    assert not unknown, f"rooms not in DESIGN.md's map: {sorted(unknown)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_what_its_room_may(module):
    bad = [f"{module} (line {line}{', in a function' if nested else ''}) imports {target}"
           for target, line, nested in EDGES[module] if not allowed(module, target)]
    assert not bad, "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_no_module_import_cycle_even_through_function_level_imports():
    graph = {module: {target for target, _, _ in edges if target != module} for module, edges in EDGES.items()}
    # A package's __init__ that re-exports its own submodules is not a cycle with them.
    for module in graph:
        graph[module] = {t for t in graph[module] if not (MODULES[t].name == "__init__.py" and module.startswith(t + "."))}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_room_import_cycle():
    graph: dict[str, set[str]] = {}
    for module, edges in EDGES.items():
        for target, _, _ in edges:
            if room(target) != room(module) and room(module) != "offrl":
                graph.setdefault(room(module), set()).add(room(target))
    cycle = _cycle(graph)
    assert cycle is None, "rooms import each other: " + " -> ".join(cycle)


def test_the_checker_sees_a_forbidden_function_level_import():
    """The rules catch what they exist for: a lazy import from data/ into train/ (a hidden cycle)."""
    assert not allowed("offrl.data.generate", "offrl.train.online")
    assert not allowed("offrl.evaluate.speed", "offrl.train.offline")
    assert not allowed("offrl.nets.mlp", "offrl.data.dataset")
    assert not allowed("offrl.sweep.driver", "offrl.cli")
    assert allowed("offrl.algos.sequence.dt", "offrl.data.sequences")
    assert not allowed("offrl.algos.model_free.td3_bc", "offrl.data.registry")
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    found = offrl_imports("offrl.data.probe", "import numpy\n\ndef f():\n    from offrl.train import online\n")
    assert found == [("offrl.train.online", 4, True)]
    assert not allowed("offrl.data.probe", found[0][0])
