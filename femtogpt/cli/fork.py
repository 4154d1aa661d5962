"""`convert`: a Rust fork model file (.dat, bincode) to a femtogpt model file, or back; `import-fork` is its
hidden alias for `convert --to femtogpt`, kept for scripts that use it."""
from pathlib import Path

import click

from femtogpt.cli.common import UserError, check_output_path, lock_model_file, open_checkpoint, save_checkpoint


def _is_fork_file(path):
    from femtogpt.io.fork_reader import ForkFileError, read_fork_model

    try:
        read_fork_model(path)
    except ForkFileError:
        return False
    return True


def _to_femtogpt(input_path, output, force, flag, input_flag, command):
    from femtogpt.io.fork_reader import ForkFileError
    from femtogpt.io.logs import step_count
    from femtogpt.io.model_file import is_model_file
    from femtogpt.text.tokenizer import TokenizerError

    check_output_path(output, flag, force, inputs=[(f"the {input_flag}", input_path)])
    lock_model_file(output, command)
    if not Path(input_path).exists():
        raise UserError(f"{input_path}: no such file")
    if is_model_file(input_path):
        raise UserError(f"{input_path} is already a femtogpt model file; --to femtogpt converts a fork .dat file")
    from femtogpt.io.fork_convert import checkpoint_from_fork

    try:
        ckpt = checkpoint_from_fork(input_path)
    except (ForkFileError, TokenizerError, KeyError, ValueError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    save_checkpoint(ckpt, output)
    steps = step_count(ckpt.logs)
    click.echo(f"Imported {input_path}: {ckpt.hp.num_params():,} parameters, {steps} training steps, "
               f"optimizer step {ckpt.step}, {ckpt.tokenizer.summary()} -> {output}")


def _to_fork(input_path, output, force):
    from femtogpt.io.model_file import is_model_file

    check_output_path(output, "--output", force, inputs=[("the --input file", input_path)])
    lock_model_file(output, "convert")
    if not Path(input_path).exists():
        raise UserError(f"{input_path}: no such file")
    if not is_model_file(input_path) and _is_fork_file(input_path):
        raise UserError(f"{input_path} is already a fork model file; --to fork converts a femtogpt model file")
    ckpt = open_checkpoint(input_path)
    from femtogpt.atomic import remove_temp_files
    from femtogpt.io.fork_convert import ForkExportError, fork_model_from_checkpoint
    from femtogpt.io.fork_reader import ForkFileError
    from femtogpt.io.fork_writer import write_fork_model
    from femtogpt.io.logs import step_count

    try:
        fork, notes = fork_model_from_checkpoint(ckpt, input_path)
        remove_temp_files(output)                  # under the writer's lock: those of killed saves only
        write_fork_model(output, fork)
    except (ForkExportError, ForkFileError) as exc:
        raise UserError(str(exc)) from None
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"Converted {input_path}: {ckpt.hp.num_params():,} parameters, {step_count(fork.logs)} training "
               f"steps, optimizer step {fork.optimizer_step}, {len(fork.tokens)} tokens -> {output} (fork .dat)")


@click.command(name="convert")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="The model file to convert: a femtogpt model file (--to fork) or a fork .dat file (--to femtogpt).")
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--to", "target", required=True, type=click.Choice(["fork", "femtogpt"]),
              help="fork: write the Rust fork's .dat (bincode); femtogpt: write a femtogpt model file.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def convert(input_path, output_path, target, force):
    """Convert a model between femtogpt's file and the Rust fork's .dat file, keeping every weight and
    optimizer moment bitwise, the optimizer step, the token ids and the logs (ids kept, so `compare`
    sees lineage across the two).

    \b
    --to fork refuses, in one line and writing nothing, what the fork cannot hold: pos_enc other than
    none/absolute, byte-level tokenizers (kind byte, byte-level BPE); it drops, with a note, what it
    has no place for: femtogpt's own log kinds and fields, and the training settings.
    """
    if target == "femtogpt":
        _to_femtogpt(input_path, output_path, force, "--output", "--input file", "convert")
    else:
        _to_fork(input_path, output_path, force)


@click.command(name="import-fork", hidden=True)
@click.argument("fork_file", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def import_fork(fork_file, output, force):
    """The same as `convert --to femtogpt --input FORK_FILE --output OUTPUT` (kept for scripts)."""
    _to_femtogpt(fork_file, output, force, "OUTPUT", "fork file", "import-fork")


COMMANDS = [convert, import_fork]
