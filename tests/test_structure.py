"""The package's shape: its modules import one another one way only (no import cycle)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import networkx  # torch's dependency
import pytest

import pytest_finetune

PACKAGE = Path(pytest_finetune.__file__).parent


def module_name(file: Path, package: Path = PACKAGE) -> str:
    """``file``'s module, dotted from ``package``: ``baselines`` for ``baselines/__init__.py``, ``__init__`` for
    the package's own."""
    parts = file.relative_to(package).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def relative_imports(file: Path, package_dir: Path, modules: set[str]) -> Iterator[str]:
    """The modules of the package at ``package_dir`` that ``file`` imports relatively: at module level, under
    ``if TYPE_CHECKING`` and inside functions alike (an import inside a function still closes a cycle when it runs);
    an :class:`ImportError` for one that names no module of the package (a function's import left behind by a move)."""
    package = file.parent.relative_to(package_dir).parts
    # the packages that hold ``file`` have run before it: importing one of them adds no edge
    holders = {".".join(package[:end]) or "__init__" for end in range(len(package) + 1)}
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[: len(package) - (node.level - 1)]
        target = ".".join([*base, *(node.module.split(".") if node.module else [])])
        submodules = [f"{target}.{alias.name}" if target else alias.name for alias in node.names]
        if (target or "__init__") not in modules and not set(submodules) & modules:
            raise ImportError(f"{file.relative_to(package_dir)}, line {node.lineno}: no module {target!r} to import")
        if (target or "__init__") in modules - holders:
            yield target or "__init__"
        yield from (submodule for submodule in submodules if submodule in modules)  # ``from . import gate``


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package at ``package`` with the package's modules it imports."""
    files = sorted(package.rglob("*.py"))
    modules = {module_name(file, package) for file in files}
    return {
        module_name(file, package): set(relative_imports(file, package, modules)) - {module_name(file, package)}
        for file in files
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module, each sorted."""
    directed = networkx.DiGraph([(source, target) for source, targets in graph.items() for target in targets])
    components = (sorted(component) for component in networkx.strongly_connected_components(directed))
    return sorted(component for component in components if len(component) > 1)


def a_cycle(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """One import path inside ``component`` that leads from its first module back to it."""
    inside = networkx.DiGraph([(source, target) for source in component for target in graph[source] & set(component)])
    return [source for source, _ in networkx.find_cycle(inside, component[0])] + [component[0]]


def test_cycles_finds_a_cycle() -> None:
    """The check itself: a cycle through three modules is found, and a one-way graph has none."""
    looping = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(looping) == [["a", "b", "c"]]
    assert a_cycle(looping, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_every_relative_import(tmp_path: Path) -> None:
    """Imports inside functions, under ``if TYPE_CHECKING`` and in a subpackage (``from ..x import``,
    ``from . import x``) are edges; absolute imports and names that are no module are not."""
    files = {
        "__init__.py": "",
        "low.py": "import json\nfrom . import high\n",
        "high.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.part import thing\n",
        "sub/__init__.py": "from .part import thing\n",
        "sub/part.py": "def thing():\n    from ..low import name\n    from .. import errors\n    from . import part\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert import_graph(tmp_path) == {
        "__init__": set(),
        "low": {"high"},
        "high": {"sub.part"},
        "sub": {"sub.part"},
        "sub.part": {"low"},
    }
    assert cycles(import_graph(tmp_path)) == [["high", "low", "sub.part"]]
    (tmp_path / "sub/part.py").write_text("def thing():\n    from .low import name\n")
    with pytest.raises(ImportError, match=r"part.py, line 2: no module 'sub.low' to import"):
        import_graph(tmp_path)


def test_no_import_cycle() -> None:
    """No module of the package imports, directly or not, a module that imports it: data flows one way
    (tasks, recipe and the result type at the bottom; storage; comparison; reporting; plugin and fixtures on top)."""
    graph = import_graph()
    found = [f"{', '.join(component)} ({' -> '.join(a_cycle(graph, component))})" for component in cycles(graph)]
    assert not found, "import cycle(s) in pytest_finetune: " + "; ".join(found)


def test_every_option_and_ini_key_is_declared_in_the_table(pytester: pytest.Pytester) -> None:
    """``pytest --help`` lists exactly the options and ini keys of :data:`pytest_finetune.options.OPTIONS`: one
    registered elsewhere would escape the record command's and the environment's derivations from the table."""
    from pytest_finetune.options import OPTIONS

    shown = pytester.runpytest("--help").stdout.str()
    flags = set(re.findall(r"^\s+(--finetune[a-z-]*)", shown, re.MULTILINE))
    ini_keys = set(re.findall(r"^\s+(finetune_[a-z_]+) \(", shown, re.MULTILINE))
    assert flags == {option.flag for option in OPTIONS if option.flag}
    assert ini_keys == {option.ini for option in OPTIONS if option.ini}
