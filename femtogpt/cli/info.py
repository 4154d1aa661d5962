"""Reading a model file's record: `info` (its settings and a summary of its history) and `loss` (the
last training losses). The summaries are femtogpt/io/info.py; here only flags and output."""
import json

import click

from femtogpt.cli.common import UserError, model_option
from femtogpt.cli.flags import MAX_LIST


@click.command()
@model_option()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model_path, as_json):
    """Hyperparameters, parameter count, optimizer step, tokenizer and a summary of the logs."""
    from femtogpt.io.info import model_summary, summary_lines
    from femtogpt.io.model_file import ModelFileError

    try:
        summary = model_summary(model_path)
    except ModelFileError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for line in summary_lines(summary):
        click.echo(line)


@click.command()
@model_option()
@click.option("--limit", type=click.IntRange(0, MAX_LIST), default=10, show_default=True,
              help="How many of the last losses; 0: all (as everywhere).")
def loss(model_path, limit):
    """Print the last training losses from the model's logs, one per line."""
    from femtogpt.io.info import training_losses
    from femtogpt.io.model_file import ModelFileError

    try:
        losses = training_losses(model_path, limit)
    except ModelFileError as exc:
        raise UserError(str(exc)) from None
    for value in losses:
        click.echo(f"{value:.6g}")


COMMANDS = [info, loss]
