"""`femtogpt inspect`: what a model does inside, layer by layer (femtogpt/tools/inside.py)."""
import json
import sys
from pathlib import Path

import click

from femtogpt.cli.common import (UserError, check_model_memory, check_output_path, load_dataset_tokens, model_option,
                                 open_checkpoint, plot_errors, use_engine)
from femtogpt.cli.flags import SEED, THREADS


@click.command(name="inspect")
@model_option()
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(),
              help="A text file or directory whose windows are run through the model.")
@click.option("--batches", type=click.IntRange(1, 10_000), default=4, show_default=True,
              help="Batches of random windows (num_tokens + 1 tokens) to average over.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=8, show_default=True, help="Windows per batch.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Which windows (the same seed, the same windows).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              help="Also draw it to this PNG (needs the plot extra: pip install 'femtogpt[plot]').")
@click.option("--force", is_flag=True, help="Overwrite --plot's file if it exists.")
@click.option("--threads", type=THREADS, default=None,
              help="Threads, at most the CPUs this process may use [default: one per physical core].")
def inspect_cmd(model_path, dataset, batches, batch_size, seed, as_json, plot_out, force, threads):
    """Look inside a model, layer by layer, on windows of a dataset.

    \b
    Per layer: the RMS of the residual stream entering and leaving it; the RMS of the attention and
    feed-forward outputs and their ratio to the stream each is added to; the logit lens (the final
    LayerNorm and head applied after the layer: loss, top-1 accuracy and the mean probability of the
    top token); and the attention entropy of each head, beside its maximum (uniform attention).
    """
    if plot_out is not None:
        check_output_path(plot_out, "--plot", force, inputs=[("the --model file", model_path)])
    if not Path(dataset).exists():
        raise UserError(f"--dataset {dataset}: no such file or directory")
    ckpt = open_checkpoint(model_path)
    use_engine(threads)
    from femtogpt.tools.inside import layer_stats, table_lines
    from femtogpt.train.step import sample_batch

    tokens = load_dataset_tokens(ckpt.tokenizer, dataset, sys.stdout.isatty() and not as_json)
    T = ckpt.hp.num_tokens
    if len(tokens) < T + 1:
        raise UserError(f"--dataset {dataset}: has {len(tokens)} tokens; a window needs num_tokens + 1 = {T + 1}")
    check_model_memory(ckpt.hp, batch_size, f"--batch-size {batch_size}: inspecting {model_path}", loaded=True,
                       hint="; try a smaller --batch-size")
    stats = layer_stats(ckpt.model, (sample_batch(tokens, batch_size, T, seed, i) for i in range(batches)))
    stats = {"model": str(model_path), "dataset": str(dataset), **stats}
    if plot_out is not None:
        from femtogpt.tools.plotting import plot_layer_stats

        with plot_errors("--plot", plot_out):
            plot_layer_stats(stats, plot_out, title=f"{model_path} on {dataset}")
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    for line in table_lines(stats):
        click.echo(line)
    if plot_out is not None:
        click.echo(f"Wrote {plot_out}")


COMMANDS = [inspect_cmd]
