"""Toy data and the first-run demo: `dummy-data NAME` and `demo`."""
import sys
from pathlib import Path

import click

from femtogpt.cli.common import UserError, check_output_path, save_checkpoint, use_engine
from femtogpt.cli.flags import SEED, TOY_TASKS, FiniteFloat
from femtogpt.cli.common import lock_model_file

MAX_SIZE = 10_000_000  # dummy-data --size: 200 times the largest default; about 160 MB of text


@click.command(name="dummy-data")
@click.argument("name", type=TOY_TASKS)
@click.option("--seed", type=SEED, default=None,
              help="Seed (negative seeds are refused; the reference's Python script reads -N as N) "
                   "[default: random].")
@click.option("--size", type=click.IntRange(1, MAX_SIZE), default=None,
              help="In the generator's unit (words, lines, attempts, groups) [default: the reference's].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file [default: stdout].")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def dummy_data(name, seed, size, out, force):
    """Generate one of the fork's toy datasets (reference §7)."""
    if out is not None:
        check_output_path(out, "--out", force)
    from femtogpt.atomic import AtomicWriteError, write_atomically
    from femtogpt.tasks.toy_data import file_text

    text = file_text(name, size, seed)  # byte for byte what the reference's script prints
    if out is None:
        click.echo(text, nl=False)
    else:
        try:
            write_atomically(out, text)
        except AtomicWriteError as exc:
            raise UserError(str(exc)) from None
        click.echo(f"Wrote {len(text):,} characters to {out}", err=True)


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False), default="femtogpt-demo",
              help="Where the demo writes its dataset and model.")
@click.option("--seconds", type=FiniteFloat(1.0, 86_400.0), default=60.0, help="Training time budget.")
@click.option("--seed", type=SEED, default=0,
              help="Seed for data, init and training (negative seeds are refused).")
def demo(workdir, seconds, seed):
    """The first thing to run: make toy data, init a small model, train it ~1 minute, sample.

    Writes DIR/dataset.txt (simple_dummy words like "jakogi;") and DIR/model.dat, which the other
    commands can then use (try `femtogpt info --model DIR/model.dat`).
    """
    out = Path(workdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--dir {workdir}: cannot create it: {exc.strerror or exc}") from None
    for name in ("dataset.txt", "model.dat"):
        check_output_path(out / name, "--dir", model_output=name == "model.dat")
    lock_model_file(out / "model.dat", "demo")
    use_engine()
    from femtogpt.tools.demo import run_demo
    from femtogpt.train.precompile import warm_up
    from femtogpt.train.progress import TrainDisplay

    dataset, model_path = out / "dataset.txt", out / "model.dat"
    live = sys.stdout.isatty()
    demo_run = run_demo(dataset, model_path, seed, seconds, lambda ckpt: save_checkpoint(ckpt, model_path),
                        TrainDisplay(None, 0, 32 * 32, live=live, seconds=seconds), click.echo,
                        before_training=lambda: warm_up(spinner=live))
    ckpt, result = demo_run.checkpoint, demo_run.result
    last = f"; loss {result.last_loss:.4f}" if result is not None else ""
    click.echo(f"Trained {ckpt.step} steps{last}. Saved {model_path}.")
    click.echo("Samples (prompt: a newline):")
    for line in demo_run.samples:
        click.echo("  " + line)
    click.echo(f"Next: femtogpt train --model {model_path} --dataset {dataset} --steps 500")
    if result is not None and result.failure:
        raise UserError(result.failure)

COMMANDS = [dummy_data, demo]
