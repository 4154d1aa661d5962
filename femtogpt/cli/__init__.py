"""The `femtogpt` command line: Click commands that parse, call one library function and print.

One module per area, each listing its Click commands in COMMANDS; cli/common.py holds what several
share, and no command module imports another. No model logic lives here, and
nothing heavy is imported at module level: `femtogpt --help` must start instantly, so each command
imports the engine (NumPy, Numba kernels) inside its body.
"""
import click

from femtogpt.cli import bench, data, export, fork, growth, infer, info, model, scoring, text

COMMAND_MODULES = [model, infer, info, text, growth, data, scoring, fork, export, bench]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="femtogpt")
def cli():
    """femtogpt: train, grow and inspect small GPT models on your CPU (NumPy + Numba)."""


for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)
