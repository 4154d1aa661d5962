"""The `femtogpt` command line: Click commands that parse, call the library and print.

No model logic lives here, and nothing heavy is imported at module level: `femtogpt --help` must
start instantly, so each command imports the engine (NumPy, Numba kernels) inside its body.
"""
import click

from femtogpt.commands import COMMAND_MODULES


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="femtogpt")
def cli():
    """femtogpt: train, grow and inspect small GPT models on your CPU (NumPy + Numba)."""


for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)
