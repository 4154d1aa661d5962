"""The package's import graph, and what importing it does to the process.

Folders are layers, and a module imports only from its own layer or lower ones (imports inside
functions count too: they run as surely, only later). Importing femtogpt, or any module of it but
the CLI, leaves os.environ and NumPy's BLAS thread count as they were: runtime settings live in
femtogpt/engine/runtime.py, entered around engine work, never at import.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import femtogpt

PACKAGE = Path(femtogpt.__file__).parent
LAYERS = ["config", "engine", "model", "text", "io", "train", "growth", "tasks", "tools", "cli"]  # low -> high
EXEMPT = {"femtogpt", "femtogpt.__main__"}  # the package's front door may import anything
# other single modules at the top (config.py, atomic.py) are the bottom layer, with config

# Upward imports that exist today and are someone else's to move; each one listed here is tolerated.
# Remove an entry when its import is gone (the test then fails until it is removed, to keep it honest).
KNOWN_VIOLATIONS = set()  # none today


def module_names():
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("femtogpt",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name, path, modules):
    """The femtogpt modules that `name` imports anywhere in its source (top level or in functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a.b import c` imports module a.b.c when c is a module, else a name of a.b
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import femtogpt.x.y` names a module or a package
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] == "femtogpt" and target != name:
                found.add(target)
    return found


def import_graph():
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer(name):
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").is_file():
        return 0
    return None


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer():
    stray = [name for name in import_graph() if name not in EXEMPT and layer(name) is None]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_point_to_the_same_layer_or_lower():
    upward = {(name, target) for name, targets in import_graph().items() if name not in EXEMPT
              for target in targets if target not in EXEMPT and layer(target) > layer(name)}
    new = sorted(upward - KNOWN_VIOLATIONS)
    assert not new, "imports from a higher layer:\n" + "\n".join(f"  {a} -> {b}" for a, b in new)
    gone = sorted(KNOWN_VIOLATIONS - upward)
    assert not gone, f"fixed, so remove them from KNOWN_VIOLATIONS: {gone}"


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from femtogpt.engine.ops import matmul\n    from . import step\n"
                   "import femtogpt.model.gpt as gpt\n")
    modules = module_names()
    assert imports_of("femtogpt.train.loop", src, modules) == {
        "femtogpt.engine.ops.matmul", "femtogpt.train.step", "femtogpt.model.gpt"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


_IMPORT_ALL = """
import importlib, json, os, sys
from threadpoolctl import threadpool_info
import numpy  # NumPy's BLAS starts with its own thread count, which femtogpt must leave alone
def state():
    blas = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    return dict(os.environ), blas
before = state()
import femtogpt
after_package = state()
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
after_all = state()
print(json.dumps({"package": after_package == before, "all": after_all == before,
                  "blas": before[1], "changed": sorted(set(after_all[0].items()) ^ set(before[0].items()))}))
"""


def test_importing_femtogpt_changes_nothing_in_the_process():
    names = [n for n in module_names() if n not in EXEMPT and layer(n) != LAYERS.index("cli")]
    # OPENBLAS_NUM_THREADS unset, so NumPy's OpenBLAS starts with OMP_NUM_THREADS=2 threads, on any machine
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["OMP_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", _IMPORT_ALL, json.dumps(names)], env=env, check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["blas"] and result["blas"][0][1] == 2, result  # NumPy's BLAS, found and on 2 threads
    assert result["package"], result
    assert result["all"], result
