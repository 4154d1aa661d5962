"""`import-fork`: turn a Rust fork model file into a femtogpt model file."""
from pathlib import Path

import click

from femtogpt.cli.common import UserError, check_output_path, save_checkpoint
from femtogpt.cli.common import lock_model_file


@click.command(name="import-fork")
@click.argument("fork_file", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def import_fork(fork_file, output, force):
    """Convert the fork's FORK_FILE (.dat, bincode) into OUTPUT, keeping the weights, the optimizer
    state, the token ids and the logs (so `compare` sees lineage between imported models)."""
    from femtogpt.io.fork_reader import ForkFileError
    from femtogpt.io.logs import step_count
    from femtogpt.text.tokenizer import TokenizerError

    check_output_path(output, "OUTPUT", force, inputs=[("the fork file", fork_file)])
    lock_model_file(output, "import-fork")
    if not Path(fork_file).exists():
        raise UserError(f"{fork_file}: no such file")
    from femtogpt.io.fork_convert import checkpoint_from_fork

    try:
        ckpt = checkpoint_from_fork(fork_file)
    except (ForkFileError, TokenizerError, KeyError, ValueError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    save_checkpoint(ckpt, output)
    steps = step_count(ckpt.logs)
    click.echo(f"Imported {fork_file}: {ckpt.hp.num_params():,} parameters, {steps} training steps, "
               f"optimizer step {ckpt.step}, {ckpt.tokenizer.summary()} -> {output}")


COMMANDS = [import_fork]
