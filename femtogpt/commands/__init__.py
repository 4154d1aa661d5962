"""The CLI's commands, one module per area; each module lists its Click commands in COMMANDS.

Modules here import only click (and the standard library) at module level: `femtogpt --help` must
not load NumPy, Numba or the tokenizers. Command bodies import what they need.
"""
import importlib

# modules that exist are registered; each is imported at start-up, so keep them light
_NAMES = ("model_cmds", "tokenizer_cmds", "growth_cmds", "data_cmds", "bench_cmds", "score_cmds", "fork_cmds")
COMMAND_MODULES = []
for _name in _NAMES:
    try:
        COMMAND_MODULES.append(importlib.import_module(f"femtogpt.commands.{_name}"))
    except ModuleNotFoundError as exc:
        if exc.name != f"femtogpt.commands.{_name}":
            raise
