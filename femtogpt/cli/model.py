"""The everyday commands over one model file: init, train, infer, eval, loss, info, reset-optimizer.

Each command parses its flags, calls the library and prints; heavy modules are imported inside the
command bodies so `femtogpt --help` stays instant. Expected failures become one `Error:` line.
"""
import json
import math
import os
import signal
import sys
from pathlib import Path

import click

from femtogpt.cli.common import UserError, model_option

POS_ENC_CHOICES = ("none", "absolute")
TOKENIZER_CHOICES = ("ascii", "char", "byte", "bpe")


def open_session(path):
    """Load a model file, or fail with one line."""
    from femtogpt.io.model_file import ModelFileError
    from femtogpt.io.checkpoint import load
    from femtogpt.text.tokenizer import TokenizerError

    try:
        return load(path)
    except (ModelFileError, TokenizerError) as exc:
        raise UserError(str(exc)) from None


def save_session(session, path):
    from femtogpt.io.model_file import ModelFileError

    try:
        session.save(path)
    except ModelFileError as exc:
        raise UserError(str(exc)) from None


def tokenizer_options(func):
    """The tokenizer flags shared by init and init-with."""
    options = [
        click.option("--tokenizer", type=click.Choice(TOKENIZER_CHOICES), default="ascii",
                     help="Tokenizer kind: ascii (V=101), char (the data's characters), byte (256), "
                          "bpe (a tokenizer JSON; the shipped default if no --tokenizer-data)."),
        click.option("--tokenizer-data", type=click.Path(exists=True),
                     help="char: a text file or directory; bpe: a tokenizer JSON or a JSON array of tokens."),
        click.option("--case-sensitive/--case-insensitive", default=True,
                     help="--case-insensitive lowercases text before encoding."),
        click.option("--reserve-tokens", type=click.IntRange(min=0), default=0,
                     help="Append N reserved special tokens <|reserved_000|>... to the vocabulary."),
        click.option("--max-vocab", type=click.IntRange(min=2), default=None,
                     help="char: keep at most this many tokens (most frequent characters first)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_tokenizer_from_flags(tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab):
    from femtogpt.text.tokenizer import TokenizerError, build_tokenizer

    if tokenizer == "char" and tokenizer_data is None:
        if not Path("dataset.txt").exists():
            raise UserError("--tokenizer char needs --tokenizer-data (a text file or directory)")
        tokenizer_data = "dataset.txt"  # the reference's default
    try:
        tok = build_tokenizer(tokenizer, tokenizer_data, case_insensitive=not case_sensitive,
                              reserve_tokens=reserve_tokens, max_vocab=max_vocab)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None
    for note in tok.notes:  # e.g. characters dropped by --max-vocab
        click.echo(f"note: {note}", err=True)
    return tok


def check_new_file(path, force):
    if Path(path).exists() and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")


def make_hyperparameters(vocab_size, num_tokens, embedding_degree, num_layers, num_heads, pos_enc):
    from femtogpt.config import Hyperparameters

    if embedding_degree % num_heads:
        raise UserError(f"--embedding-degree ({embedding_degree}) must be divisible by "
                        f"--num-heads ({num_heads})")
    return Hyperparameters(vocab_size=vocab_size, num_tokens=num_tokens,
                           embedding_degree=embedding_degree, num_layers=num_layers,
                           num_heads=num_heads, pos_enc=pos_enc).validate()


@click.command()
@model_option(help="Model file to create.")
@tokenizer_options
@click.option("--positional-encoding", "pos_enc", type=click.Choice(POS_ENC_CHOICES), default="absolute",
              help="Fixed sinusoidal table added to the embeddings (absolute), or none.")
@click.option("--num-tokens", type=click.IntRange(min=1), default=80, help="Context length T.")
@click.option("--embedding-degree", type=click.IntRange(min=1), default=80, help="Embedding size E.")
@click.option("--num-layers", type=click.IntRange(min=1), default=4, help="Layers L.")
@click.option("--num-heads", type=click.IntRange(min=1), default=4, help="Attention heads H (E % H == 0).")
@click.option("--seed", type=int, default=None, help="Seed for the init and, later, training [default: random].")
@click.option("--force", is_flag=True, help="Overwrite an existing model file.")
def init(model_path, tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab, pos_enc,
         num_tokens, embedding_degree, num_layers, num_heads, seed, force):
    """Create a new model file with the reference's random init."""
    check_new_file(model_path, force)
    tok = build_tokenizer_from_flags(tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab)
    hp = make_hyperparameters(tok.vocab_size, num_tokens, embedding_degree, num_layers, num_heads, pos_enc)
    from femtogpt.io.checkpoint import create

    session = create(hp, tok, seed)
    save_session(session, model_path)
    click.echo(f"Successfully initialized a model with {hp.num_params():,} parameters "
               f"({tok.summary()}) in {model_path}")


class _StopFlag:
    """First Ctrl-C asks the loop to stop after this step; a second one aborts at once."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        click.echo("\nStopping after this step and saving (Ctrl-C again to abort without saving)...",
                   err=True)


def load_dataset_tokens(tokenizer, dataset, show_progress):
    from femtogpt.text.tokenizer import TokenizerError, encode_file_cached

    try:
        return encode_file_cached(tokenizer, dataset, progress=show_progress)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None


def dataset_fingerprint(path):
    """A content hash of a dataset file or directory (sorted files), for the TrainSession log."""
    import hashlib

    h = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:32]


def warm_up_kernels(live):
    """Compile (or load from the cache) every training kernel on a tiny model, with a spinner."""
    from femtogpt.train.precompile import warm_up

    if live:
        from rich.console import Console

        with Console().status("Compiling kernels (first run only, under a minute; later runs use the cache)..."):
            warm_up()
    else:
        warm_up()


@click.command()
@model_option()
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(),
              help="A text file, or a directory of text files.")
@click.option("--steps", type=click.IntRange(min=1), default=100_000, help="Steps in this invocation.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Windows of T+1 tokens per step.")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0,
              help="Dropout on attention probabilities and after each attention projection.")
@click.option("--lr", type=click.FloatRange(min=0.0), default=1e-3, help="Peak learning rate.")
@click.option("--min-lr", type=click.FloatRange(min=0.0), default=1e-5, help="Learning-rate floor.")
@click.option("--warmup", type=click.IntRange(min=0), default=100, help="Linear warm-up steps from 0.")
@click.option("--decay-steps", type=click.IntRange(min=1), default=50_000, help="Linear decay steps after warm-up.")
@click.option("--seed", type=int, default=None, help="Seed for batches and dropout [default: the file's seed].")
@click.option("--save-every", type=click.IntRange(min=0), default=100,
              help="Save every N steps (0: by time and at the end only).")
@click.option("--save-minutes", type=click.FloatRange(min=0.0), default=10.0, show_default=True,
              help="Also save when this many minutes have passed since the last save (0: off).")
@click.option("--keep-best", is_flag=True,
              help="Also save MODEL.best.dat (the model's name with .best) at every new lowest validation "
                   "loss; needs --val-fraction.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0,
              help="Hold out this tail fraction of the dataset for validation.")
@click.option("--eval-every", type=click.IntRange(min=0), default=0,
              help="Validation loss every N steps (needs --val-fraction; default 100 when it is set).")
@click.option("--sample-every", type=click.IntRange(min=0), default=0,
              help="Print a sample from the model every N steps (0: never).")
@click.option("--sample-len", type=click.IntRange(min=1), default=100, show_default=True,
              help="Tokens per sample.")
@click.option("--quiet", is_flag=True, help="No progress lines (samples, validation and the final line still print).")
@click.option("--reset-optimizer", is_flag=True, help="Drop the optimizer state first (warm-up restarts).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Worker threads [default: one per physical core].")
def train(model_path, dataset, steps, batch_size, dropout, lr, min_lr, warmup, decay_steps, seed,
          save_every, save_minutes, keep_best, val_fraction, eval_every, sample_every, sample_len, quiet,
          reset_optimizer, threads):
    """Train the model on a dataset, resuming exactly from the file's state.

    \b
    Ctrl-C once: finish the current step, save, exit 130. Twice: abort without saving.
    The same --seed gives the same result whether run in one go or split across invocations.
    """
    if threads:  # before Numba loads; GEMMs follow it (OpenBLAS itself stays single-threaded)
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    if not Path(dataset).exists():
        raise UserError(f"--dataset {dataset}: no such file or directory")
    if keep_best and not val_fraction:
        raise UserError("--keep-best needs --val-fraction: the best model is the one with the lowest "
                        "validation loss")
    session = open_session(model_path)
    from femtogpt.config import OptimizerConfig
    from femtogpt.train.progress import TrainDisplay
    from femtogpt.train.loop import TrainOptions, run_training

    live = sys.stdout.isatty() and not quiet
    tokens = load_dataset_tokens(session.tokenizer, dataset, live)
    if reset_optimizer:
        session.reset_optimizer()
    session.ensure_optimizer(OptimizerConfig(lr=lr, min_lr=min_lr, warmup=warmup, decay_steps=decay_steps))
    if val_fraction and not eval_every:
        eval_every = 100
    options = TrainOptions(steps=steps, seed=session.seed if seed is None else seed,
                           batch_size=batch_size, dropout=dropout, save_every=save_every,
                           save_minutes=save_minutes, val_fraction=val_fraction, eval_every=eval_every,
                           sample_every=sample_every, sample_len=sample_len)
    dataset_info = {"dataset": str(dataset), "dataset_hash": dataset_fingerprint(dataset)}
    best_path, best_loss = None, float("inf")
    if keep_best:
        best_path = best_file_path(model_path)
        best_loss = previous_best_loss(best_path, session, dataset_info["dataset_hash"], val_fraction)
    hp = session.hp
    import numba

    click.echo(f"Model {model_path}: {hp.num_params():,} parameters, step {session.step}; "
               f"dataset {dataset}: {len(tokens):,} tokens; {batch_size}x{hp.num_tokens} tokens per step; "
               f"{numba.get_num_threads()} threads")
    warm_up_kernels(live)
    stop = _StopFlag()
    previous = signal.signal(signal.SIGINT, stop)
    display = TrainDisplay(steps, session.step, batch_size * hp.num_tokens, live=live, quiet=quiet)
    try:
        result = run_training(session, tokens, options, lambda: save_session(session, model_path),
                              display, should_stop=lambda: stop.requested, dataset_info=dataset_info,
                              save_best=best_path and (lambda: save_best(session, best_path)),
                              best_loss=best_loss)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("Aborted without saving.", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.failure:
        raise UserError(f"{result.failure}; stopped, and {model_path} keeps the last good weights "
                        f"(step {session.step}). Try a lower --lr.")
    click.echo(f"Saved {model_path} at step {session.step} (loss {result.last_loss:.4f}).")
    if best_path is not None:
        if result.best_step is not None:
            click.echo(f"Best validation loss {result.best_loss:.4f} at step {result.best_step}: saved in {best_path}.")
        elif math.isfinite(best_loss):
            click.echo(f"No validation loss below {best_path}'s {best_loss:.4f}; it is unchanged.")
    if result.stopped:
        sys.exit(130)


def save_best(session, best_path):
    """Save the --keep-best file; a failure there warns and training goes on (the model itself is
    still saved on schedule)."""
    try:
        save_session(session, best_path)
        return True
    except UserError as exc:
        click.echo(f"warning: {exc.message}; training goes on", err=True)
        return False


def best_file_path(model_path):
    """model.dat -> model.best.dat (the --keep-best file beside the model)."""
    path = Path(model_path)
    return str(path.with_name(f"{path.stem}.best{path.suffix or '.dat'}"))


def previous_best_loss(best_path, session, dataset_hash, val_fraction):
    """The validation loss a new best must beat: the existing best file's, when it is this model's
    (same Init) judged on the same validation data (same dataset and --val-fraction); else inf."""
    from femtogpt.io.model_file import ModelFileError, peek_header

    if not Path(best_path).exists():
        return float("inf")
    try:
        logs = peek_header(best_path)["logs"]
    except ModelFileError as exc:
        raise UserError(f"{exc} (the --keep-best file; move it away to start a new one)") from None
    if not (logs and session.logs and logs[0]["id"] == session.logs[0]["id"]):
        raise UserError(f"{best_path} is the best file of another model (a different init); move it "
                        f"away or train without --keep-best")
    sessions = [log for log in logs if log["kind"] == "TrainSession"]
    evals = [log for log in logs if log["kind"] == "Eval"]
    if (sessions and evals and sessions[-1].get("dataset_hash") == dataset_hash
            and sessions[-1].get("val_fraction") == val_fraction):
        return float(evals[-1]["val_loss"])
    click.echo(f"note: {best_path} was judged on other validation data; this run's first validation "
               f"loss replaces it")
    return float("inf")


@click.command()
@model_option()
@click.argument("prompt", required=False, default="")
@click.option("--count", type=click.IntRange(min=0), default=100, help="Tokens to generate.")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.8,
              help="Logits are divided by this; 0 = greedy.")
@click.option("--top-k", type=click.IntRange(min=0), default=0, help="Keep the k most likely tokens (0: off).")
@click.option("--top-p", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0,
              help="Keep the smallest set of tokens with this much probability (1: off).")
@click.option("--seed", type=int, default=None, help="Seed for sampling [default: random].")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None,
              help="Read the prompt from this UTF-8 file instead of PROMPT.")
def infer(model_path, prompt, count, temperature, top_k, top_p, seed, prompt_file):
    """Print PROMPT followed by a sampled continuation, streamed as it is generated.

    Order: logits / temperature, then top-k, then top-p, then sample. A prompt longer than the
    context keeps its last tokens; the context slides when full.
    """
    if prompt_file is not None:
        if prompt:
            raise UserError("give either PROMPT or --prompt-file, not both")
        try:
            prompt = Path(prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--prompt-file {prompt_file}: {getattr(exc, 'strerror', None) or exc}") from None
    session = open_session(model_path)
    from femtogpt.model.generate import empty_prompt_start, generate

    tok = session.tokenizer
    prompt_ids = [int(i) for i in tok.encode(prompt)]
    unknown = tok.count_unknown(prompt) if tok.unk_id is not None else 0
    if unknown:
        click.echo(f"warning: {unknown} character(s) of the prompt are not in the vocabulary (<unk>)", err=True)
    start_id = None if prompt_ids else empty_prompt_start(tok)
    click.echo(prompt, nl=False)
    generated, shown = [], [0]

    def on_token(token_id):
        generated.append(token_id)
        text = tok.decode(generated)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            click.echo(text[shown[0]:], nl=False)
            shown[0] = len(text)
            sys.stdout.flush()

    generate(session.model, prompt_ids, count, temperature=temperature, top_k=top_k, top_p=top_p,
             seed=seed, on_token=on_token, start_id=start_id)
    text = tok.decode(generated)
    click.echo(text[shown[0]:])


@click.command(name="eval")
@model_option()
@click.option("--dataset", required=True, type=click.Path(), help="A text file or directory to evaluate on.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Windows per forward pass.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"loss\": ..., \"tokens\": ...}.")
def eval_cmd(model_path, dataset, batch_size, as_json):
    """Mean cross-entropy over a dataset, in consecutive windows covering it once."""
    if not Path(dataset).exists():
        raise UserError(f"--dataset {dataset}: no such file or directory")
    session = open_session(model_path)
    from femtogpt.train.evaluate import evaluate_tokens

    tokens = load_dataset_tokens(session.tokenizer, dataset, sys.stdout.isatty() and not as_json)
    if len(tokens) < 2:
        raise UserError(f"--dataset {dataset}: has {len(tokens)} token(s); need at least 2")
    loss, count = evaluate_tokens(session.model, tokens, batch_size=batch_size)
    if as_json:
        click.echo(json.dumps({"loss": loss, "tokens": int(count), "dataset": str(dataset)}))
    else:
        click.echo(f"loss {loss:.6f} over {count:,} predicted tokens of {dataset}")


@click.command()
@model_option()
@click.option("--limit", type=click.IntRange(min=0), default=10, help="How many of the last losses.")
def loss(model_path, limit):
    """Print the last training losses from the model's logs, one per line."""
    from femtogpt.io.model_file import ModelFileError, load_model_file

    try:
        logs = load_model_file(Path(model_path)).logs
    except ModelFileError as exc:
        raise UserError(str(exc)) from None
    steps = [log["loss"] for log in logs if log.get("kind") == "TrainStep"]
    for value in steps[len(steps) - limit:] if limit else []:
        click.echo(f"{value:.6g}")


@click.command(name="reset-optimizer")
@model_option()
def reset_optimizer(model_path):
    """Drop the optimizer state (moments and step); the next train restarts warm-up."""
    session = open_session(model_path)
    had = session.optimizer is not None
    session.reset_optimizer()
    save_session(session, model_path)
    size = Path(model_path).stat().st_size
    click.echo(f"Reset the optimizer of {model_path}" + ("" if had else " (it had none)") +
               f"; the file is now {size:,} bytes.")


COMMANDS = [init, train, infer, eval_cmd, loss, reset_optimizer]


@click.command()
@model_option()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model_path, as_json):
    """Hyperparameters, parameter count, optimizer step, tokenizer and a summary of the logs."""
    from femtogpt.io.model_file import ModelFileError, load_model_file
    from femtogpt.io.log_summary import describe, summarize_logs

    try:
        mf = load_model_file(Path(model_path))
    except ModelFileError as exc:
        raise UserError(str(exc)) from None
    steps = [log for log in mf.logs if log.get("kind") == "TrainStep"]
    meta = mf.tokenizer_meta or {}
    data = {
        "model": str(model_path),
        "file_size": Path(model_path).stat().st_size,
        "hyperparameters": mf.hp.to_dict(),
        "num_params": mf.hp.num_params(),
        "optimizer_step": mf.optimizer["step"] if mf.optimizer else None,
        "trained_steps": len(steps),
        "last_loss": steps[-1]["loss"] if steps else None,
        "tokenizer": {**meta, "vocab_size": mf.hp.vocab_size},
        "seed": (mf.train_state or {}).get("seed"),
        "history": summarize_logs(mf.logs),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    hp = mf.hp
    click.echo(f"{model_path}: {data['num_params']:,} parameters, {data['file_size']:,} bytes")
    click.echo(f"  vocab {hp.vocab_size}, context {hp.num_tokens}, embedding {hp.embedding_degree}, "
               f"layers {hp.num_layers}, heads {hp.num_heads} (head size {hp.head_size}), "
               f"positional encoding {hp.pos_enc}")
    kind = meta.get("kind", "?")
    click.echo(f"  tokenizer: {kind}, {hp.vocab_size} tokens"
               + (", case-insensitive" if meta.get("case_insensitive") else ""))
    opt = "none (fresh or reset)" if mf.optimizer is None else f"step {mf.optimizer['step']}"
    click.echo(f"  optimizer: {opt}; trained {len(steps)} steps"
               + (f", last loss {steps[-1]['loss']:.4f}" if steps else ""))
    click.echo("  history:")
    for entry in data["history"]:
        click.echo(f"    {describe(entry)}")


COMMANDS.append(info)
