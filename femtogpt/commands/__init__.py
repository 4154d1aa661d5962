"""The CLI's commands, one module per area; each module lists its Click commands in COMMANDS.

Modules here import only click (and the standard library) at module level: `femtogpt --help` must
not load NumPy, Numba or the tokenizers. Command bodies import what they need.
"""
from femtogpt.commands import (bench_cmds, data_cmds, export_cmds, fork_cmds, growth_cmds, model_cmds,
                               score_cmds, tokenizer_cmds)

COMMAND_MODULES = [model_cmds, tokenizer_cmds, growth_cmds, data_cmds, score_cmds, fork_cmds, export_cmds,
                   bench_cmds]
