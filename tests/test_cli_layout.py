"""The command modules are thin and independent: at module level they import only click, the standard
library and cli/common.py (the library only inside command bodies), and none imports another."""
import ast
import sys
from pathlib import Path

import femtogpt.cli

CLI = Path(femtogpt.cli.__file__).parent
MODULES = sorted(p for p in CLI.glob("*.py") if p.name != "__init__.py")
HELPERS = ("common", "flags", "interrupts", "processes")  # helper modules: no commands; any command module may import them


def imported(node):
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


def _helper(name):
    return any(name == f"femtogpt.cli.{h}" or name.startswith(f"femtogpt.cli.{h}.") for h in HELPERS)


def test_module_level_imports_are_click_stdlib_and_common():
    for path in MODULES:
        for node in ast.parse(path.read_text()).body:
            for name in imported(node):
                top = name.split(".")[0]
                ok = top in sys.stdlib_module_names or top == "click" or _helper(name)
                assert ok, f"{path.name} imports {name} at module level"


def test_no_command_module_imports_another():
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            for name in imported(node):
                if name.startswith("femtogpt.cli"):
                    assert _helper(name), (
                        f"{path.name} imports {name}")


def test_every_command_module_is_registered():
    names = {m.__name__.rsplit(".", 1)[1] for m in femtogpt.cli.COMMAND_MODULES}
    assert names == {p.stem for p in MODULES} - set(HELPERS)
