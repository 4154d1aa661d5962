"""The fork's analysis tools: cluster-tokens, chunks, dump-tokenizer, swap-kq (femtogpt/tools/analysis.py)."""
import json
import sys
from pathlib import Path

import click

from femtogpt.cli.common import (UserError, check_output_path, load_dataset_tokens, lock_model_file, model_option,
                                 open_checkpoint, same_file, save_checkpoint, use_engine)
from femtogpt.cli.flags import MAX_LIST, SEED, HiddenAliases


@click.command(name="cluster-tokens")
@model_option()
@click.option("--head", type=click.IntRange(min=0), default=None, help="Only this head [default: every head].")
@click.option("--top", type=click.IntRange(1, MAX_LIST), default=10, show_default=True, help="Pairs per head.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cluster_tokens(model_path, head, top, as_json):
    """The token pairs each head treats most alike: the cosine of their token-embedding slices for that
    head (columns h*hs..(h+1)*hs), most similar first. Any vocabulary size."""
    ckpt = open_checkpoint(model_path)
    H = ckpt.hp.num_heads
    if head is not None and head >= H:
        raise UserError(f"--head {head}: {model_path} has {H} heads (0..{H - 1})")
    from femtogpt.text.printable import quoted
    from femtogpt.tools.analysis import cluster_tokens as pairs_per_head

    try:
        result = pairs_per_head(ckpt.model, ckpt.tokenizer, top, None if head is None else [head])
    except ValueError as exc:  # a model whose heads do not slice the embedding (insert-head)
        raise UserError(f"{model_path}: {exc}") from None
    if as_json:
        click.echo(json.dumps([{"head": h, "pairs": [{"cosine": c, "ids": [a, b], "tokens": [ta, tb]}
                                                     for c, a, b, ta, tb in pairs]} for h, pairs in result],
                              ensure_ascii=False))
        return
    for h, pairs in result:
        click.echo(f"---- Head {h} ----")
        for c, a, b, ta, tb in pairs:
            click.echo(f"{quoted(ta)} <-> {quoted(tb)}: {c:.6f}  (ids {a}, {b})")


@click.command()
@model_option()
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(), help="A text file or directory.")
@click.option("--chunk-size", type=click.IntRange(min=2), default=None,
              help="Tokens per chunk, 2 to num_tokens + 1 [default: num_tokens + 1].")
@click.option("--count", type=click.IntRange(1, 10**7), default=1000, show_default=True, help="Chunks to score.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Which chunks (the same seed, the same chunks).")
@click.option("--out", type=click.Path(dir_okay=False), default="chunks.json", show_default=True,
              help="The JSON file to write: [{\"loss\", \"start\", \"chunk\"}], lowest loss first.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def chunks(model_path, dataset, chunk_size, count, seed, out, force):
    """The loss of random chunks of a dataset, sorted: which text the model finds easy and which hard
    (the fork's idea: build a dataset from half familiar, half unfamiliar chunks). Written once,
    atomically; a progress bar shows on a terminal."""
    check_output_path(out, "--out", force, inputs=[("the --model file", model_path), ("the --dataset", dataset)])
    if not Path(dataset).exists():
        raise UserError(f"--dataset {dataset}: no such file or directory")
    ckpt = open_checkpoint(model_path)
    use_engine()
    from femtogpt.atomic import AtomicWriteError, write_atomically
    from femtogpt.tools.analysis import chunk_losses

    tokens = load_dataset_tokens(ckpt.tokenizer, dataset, sys.stdout.isatty())
    size = chunk_size or ckpt.hp.num_tokens + 1
    if size > ckpt.hp.num_tokens + 1:
        raise UserError(f"--chunk-size {size}: at most num_tokens + 1 = {ckpt.hp.num_tokens + 1} for {model_path}")
    if len(tokens) < size:
        raise UserError(f"--dataset {dataset}: has {len(tokens)} tokens, fewer than one chunk of {size}")
    if sys.stdout.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("scoring chunks", total=count)
            rows = chunk_losses(ckpt.model, ckpt.tokenizer, tokens, size, count, seed,
                                progress=lambda done, total: bar.update(task, completed=done))
    else:
        rows = chunk_losses(ckpt.model, ckpt.tokenizer, tokens, size, count, seed)
    try:
        write_atomically(out, json.dumps(rows, ensure_ascii=False, indent=1))
    except AtomicWriteError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"Wrote {out}: {count} chunks of {size} tokens, loss {rows[0]['loss']:.4f} to {rows[-1]['loss']:.4f}")


@click.command(name="dump-tokenizer")
@model_option()
@click.option("--out", type=click.Path(dir_okay=False), default="tokenizer.json", show_default=True,
              help="Where to write the tokenizer JSON.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def dump_tokenizer(model_path, out, force):
    """Write a model's tokenizer as JSON, so `init --tokenizer bpe --tokenizer-data OUT` (or
    `init-with`) gets exactly its token ids."""
    check_output_path(out, "--out", force, inputs=[("the --model file", model_path)])
    ckpt = open_checkpoint(model_path)
    from femtogpt.atomic import AtomicWriteError, write_atomically

    try:
        write_atomically(out, ckpt.tokenizer.to_json())
    except AtomicWriteError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"Wrote {out}: the tokenizer of {model_path} ({ckpt.tokenizer.summary()})")


@click.command(name="swap-kq")
@click.option("--input", "input_path", default="model.dat", show_default=True, type=click.Path(dir_okay=False),
              help="Model whose query and key weights to swap.")
@click.option("--output", "--out", "output_path", cls=HiddenAliases, default="swapped.dat", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write it (may be --input).")
@click.option("--force", is_flag=True, help="Overwrite an existing --output other than --input.")
def swap_kq(input_path, output_path, force):
    """Swap every head's query and key weights, and their AdamW moments: the fork's fix for models
    trained before it changed attention from K·Qᵀ to Q·Kᵀ (its swap_kq left the moments unswapped).
    Twice gives back the original file's tensors bitwise."""
    check_output_path(output_path, "--output", force or same_file(input_path, output_path))
    lock_model_file(output_path, "swap-kq")
    ckpt = open_checkpoint(input_path)
    from femtogpt.io.logs import SWAP_KQ, new_log
    from femtogpt.tools.analysis import swap_kq as swap

    swap(ckpt)
    ckpt.logs.append(new_log(SWAP_KQ))
    save_checkpoint(ckpt, output_path)
    moments = "and their AdamW moments " if ckpt.optimizer is not None else ""
    click.echo(f"Swapped the query and key weights {moments}of {ckpt.hp.num_layers} layers x "
               f"{ckpt.hp.num_heads} heads of {input_path} into {output_path}")


COMMANDS = [cluster_tokens, chunks, dump_tokenizer, swap_kq]
