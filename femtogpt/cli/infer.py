"""Running a model on text: `infer` (a streamed continuation of a prompt) and `eval` (the loss on a dataset).

Only click and the standard library at module level; sampling is femtogpt/model/generate.py, the
streaming decode femtogpt/text/stream.py, the loss femtogpt/train/evaluate.py.
"""
import json
import math
import sys
from pathlib import Path

import click

from femtogpt.cli.common import (UserError, check_model_memory, load_dataset_tokens, model_option,
                                 open_checkpoint, read_model_bytes_or_fail, use_engine)
from femtogpt.cli.flags import MAX_GENERATED, MAX_LIST, SEED, FiniteFloat, TemperatureType
from femtogpt.cli.processes import check_same_inputs, process_group, quiet_unless_lead, threads_per_process, together


@click.command()
@model_option()
@click.argument("prompt", required=False, default="")
@click.option("--count", type=click.IntRange(0, MAX_GENERATED), default=100, help="Tokens to generate.")
@click.option("--temperature", type=TemperatureType(), default=0.8,
              help="Logits are divided by this; 0 = greedy, else at least 1e-6.")
@click.option("--top-k", type=click.IntRange(0, MAX_LIST), default=0,
              help="Keep the k most likely tokens (0: off).")
@click.option("--top-p", type=FiniteFloat(0.0, 1.0, min_open=True), default=1.0,
              help="Keep the smallest set of tokens with this much probability (1: off).")
@click.option("--seed", type=SEED, default=None,
              help="Seed for sampling (negative seeds are refused) [default: random].")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None,
              help="Read the prompt from this UTF-8 file instead of PROMPT.")
@click.option("--window", type=click.Choice(["half", "slide"]), default="half", show_default=True,
              help="When the context window of T tokens is full: half (the default, femtogpt's rule so "
                   "far) keeps its newest T/2 tokens and goes on, about one batched position per token; "
                   "slide drops only the oldest token, the Rust fork's rule, at the cost of a full "
                   "forward of T tokens per new token.")
@click.option("--show-probs", type=click.IntRange(1, 100), default=None,
              help="Beside each generated token, the model's K most probable next tokens and their "
                   "probabilities (softmax of its logits, before temperature, top-k and top-p); one line a token.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {\"prompt\", \"text\", \"tokens\": [{\"id\", \"token\", \"prob\", \"top\"}]} instead of streaming.")
def infer(model_path, prompt, count, temperature, top_k, top_p, seed, prompt_file, window, show_probs, as_json):
    """Print PROMPT followed by a sampled continuation, streamed as it is generated.

    Order: logits / temperature, then top-k, then top-p, then sample. A prompt longer than the
    context keeps its last tokens; when the context is full it is cut as --window says.
    """
    if prompt_file is not None:
        if prompt:
            raise UserError("give either PROMPT or --prompt-file, not both")
        try:
            prompt = Path(prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--prompt-file {prompt_file}: {getattr(exc, 'strerror', None) or exc}") from None
    ckpt = open_checkpoint(model_path)
    use_engine()
    from femtogpt.model.generate import empty_prompt_start, generate
    from femtogpt.text.stream import StreamDecoder
    from femtogpt.text.tokenizer import TokenizerError

    tok = ckpt.tokenizer
    try:
        prompt_ids = [int(i) for i in tok.encode(prompt)]
        unknown = tok.count_unknown(prompt) if tok.unk_id is not None else 0
    except TokenizerError as exc:
        raise UserError(f"--model {model_path}: its tokenizer cannot encode the prompt: {exc}") from None
    if unknown:
        click.echo(f"warning: {unknown} character(s) of the prompt are not in the vocabulary (<unk>)", err=True)
    start_id = None if prompt_ids else empty_prompt_start(tok)
    keep = ckpt.hp.num_tokens if window == "slide" else None
    if show_probs or as_json:
        steps = []

        def on_logits(logits, token_id):
            p = np.exp(log_probs(logits))
            top = np.argsort(-p, kind="stable")[:show_probs or 5]
            steps.append({"id": int(token_id), "token": tok.decode([int(token_id)]), "prob": float(p[token_id]),
                          "top": [[tok.decode([int(i)]), float(p[i])] for i in top]})
            if show_probs and not as_json:
                click.echo(f"{len(steps):5d} {_shown(steps[-1]['token']):>8s} {steps[-1]['prob']:6.3f} |  " +
                           "  ".join(f"{_shown(t)} {q:.3f}" for t, q in steps[-1]["top"]))

        import numpy as np

        from femtogpt.model.sampling import log_probs

        if show_probs and not as_json:
            click.echo(f"prompt: {_shown(prompt)}")
            click.echo("    # token     prob |  most probable next tokens")
        out = generate(ckpt.model, prompt_ids, count, temperature=temperature, top_k=top_k, top_p=top_p,
                       seed=seed, start_id=start_id, keep=keep, on_logits=on_logits)
        text = tok.decode(out)
        if as_json:
            click.echo(json.dumps({"prompt": prompt, "text": text, "tokens": steps}, ensure_ascii=False))
        else:
            click.echo(f"text: {_shown(prompt + text)}")
        return
    click.echo(prompt, nl=False)
    stream = StreamDecoder(tok)

    def on_token(token_id):
        text = stream.push(token_id)  # "" while a multi-byte character is incomplete
        if text:
            click.echo(text, nl=False)
            sys.stdout.flush()

    generate(ckpt.model, prompt_ids, count, temperature=temperature, top_k=top_k, top_p=top_p,
             seed=seed, on_token=on_token, start_id=start_id, keep=keep)
    click.echo(stream.flush())


def _shown(text):
    from femtogpt.text.printable import quoted

    return quoted(text)


@click.command(name="eval")
@model_option()
@click.option("--dataset", required=True, type=click.Path(), help="A text file or directory to evaluate on.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              help="Windows per forward pass (checked against this machine's memory first).")
@click.option("--max-windows", type=click.IntRange(1, MAX_LIST), default=None,
              help="Evaluate only the first N windows of num_tokens tokens [default: all].")
@click.option("--json", "as_json", is_flag=True,
              help="Print {\"loss\": ..., \"perplexity\": ..., \"tokens\": ...}.")
def eval_cmd(model_path, dataset, batch_size, max_windows, as_json):
    """Mean cross-entropy (and perplexity, its exponential) over a dataset, in consecutive windows
    covering it once. A progress bar shows on a terminal.

    \b
    Under `mpiexec -n K` the K processes share the batches of windows (each on its share of the
    cores) and give the bits of one process; process 0 reads the model file and prints."""
    group = process_group()  # None for one process; several under mpiexec
    lead = quiet_unless_lead(group)
    with together(group):
        if not Path(dataset).exists():
            raise UserError(f"--dataset {dataset}: no such file or directory")
        model_bytes = read_model_bytes_or_fail(model_path) if lead else None
    if group is not None:  # every process builds the model from process 0's bytes of the file
        model_bytes = group.broadcast(model_bytes)
    use_engine(threads_per_process(group))
    from femtogpt.train.evaluate import evaluate_tokens

    live = sys.stdout.isatty() and not as_json
    with together(group):
        ckpt = open_checkpoint(model_path, model_bytes)
        tokens = load_dataset_tokens(ckpt.tokenizer, dataset, live)
        if len(tokens) < 2:
            raise UserError(f"--dataset {dataset}: has {len(tokens)} token(s); need at least 2")
        windows = -(-(len(tokens) - 1) // ckpt.hp.num_tokens)  # a batch is at most the dataset's windows
        check_model_memory(ckpt.hp, min(batch_size, windows), f"--batch-size {batch_size}: evaluating "
                           f"{model_path}", loaded=True, hint="; try a smaller --batch-size")
    if group is not None:
        from femtogpt.text.fingerprint import dataset_fingerprint

        check_same_inputs(group, dataset, dataset_fingerprint(dataset), tokens, ckpt.model)
    if live:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("evaluating", total=None)
            loss, count = evaluate_tokens(ckpt.model, tokens, batch_size=batch_size, max_windows=max_windows,
                                          progress=lambda done, total: bar.update(task, completed=done, total=total),
                                          group=group)
    else:
        loss, count = evaluate_tokens(ckpt.model, tokens, batch_size=batch_size, max_windows=max_windows,
                                      group=group)
    perplexity = math.exp(min(loss, 709.0))  # exp overflows a float above ~709.78
    processes = {} if group is None else {"processes": group.size}
    if as_json:
        click.echo(json.dumps({"loss": loss, "perplexity": perplexity, "tokens": int(count),
                               "dataset": str(dataset), **processes}))
    else:
        click.echo(f"loss {loss:.6f} (perplexity {perplexity:.4g}) over {count:,} predicted tokens of {dataset}"
                   + ("" if group is None else f" ({group.size} processes)"))


COMMANDS = [infer, eval_cmd]
