"""The house keeps its shape: no import circle anywhere in normlab/ or ui/, counting imports inside
functions, and the engine's layers import only downwards (the same rules as `lint-imports`)."""

from __future__ import annotations

import grimp
import pytest

# Each layer may import only the ones before it.
LAYERS = ("normlab.core", "normlab.science", "normlab.ops", "normlab.cli")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("normlab", "ui", cache_dir=None)  # every import statement, function-level too


def strongly_connected(graph) -> list[list[str]]:
    """Tarjan's algorithm over the modules of the graph: the components of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in graph.modules:
                continue
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_the_engine_or_the_dashboard_takes_part_in_an_import_circle(graph):
    assert strongly_connected(graph) == []


def test_the_circle_finder_finds_a_circle_when_there_is_one():
    toy = grimp.ImportGraph()
    for name in ("a", "a.b", "a.c", "a.d"):
        toy.add_module(name)
    toy.add_import(importer="a.b", imported="a.c")
    toy.add_import(importer="a.c", imported="a.b")
    toy.add_import(importer="a.c", imported="a.d")
    assert strongly_connected(toy) == [["a.b", "a.c"]]


@pytest.mark.parametrize("lower, upper", [(LAYERS[i], LAYERS[j]) for i in range(4) for j in range(i + 1, 4)])
def test_a_layer_never_imports_a_layer_above_it(graph, lower, upper):
    chains = graph.find_shortest_chains(importer=lower, imported=upper)
    assert not chains, f"{lower} reaches {upper}: {sorted(chains)}"


def test_the_engine_never_imports_the_dashboard(graph):
    assert not graph.find_shortest_chains(importer="normlab", imported="ui")
