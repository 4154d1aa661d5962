"""Tokenizer commands: `train-bpe` (a byte-level BPE tokenizer JSON from a corpus) and `count-tokens`.

Only click and the standard library at module level (`femtogpt --help` must not load NumPy); the
library, femtogpt/text/tokenizer.py, is imported inside the command bodies. Not here: choosing a model's
tokenizer (`init`) or the model file itself.
"""
import json
import sys
import time
from pathlib import Path

import click

from femtogpt.cli.common import UserError, check_output_path
from femtogpt.cli.flags import MAX_LIST, MAX_VOCAB


def _warn(msg):
    click.echo(msg, err=True)


def _size(chars):
    return f"{chars / 1e6:.1f}M characters" if chars >= 1e6 else f"{chars:,} characters"


@click.command("train-bpe")
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(path_type=Path),
              help="Corpus: a text file, or a directory whose files are all read.")
@click.option("--vocab-size", default=768, show_default=True, type=click.IntRange(256, MAX_VOCAB),
              help="Tokens to learn, the 256 byte tokens included (reserved tokens come on top).")
@click.option("--reserve-tokens", default=0, show_default=True, type=click.IntRange(0, MAX_VOCAB),
              help="Append N special tokens <|reserved_000|>, ... to fill in later without touching a model's tensors.")
@click.option("--case-sensitive/--case-insensitive", default=True, show_default=True,
              help="--case-insensitive lowercases the text before encoding.")
@click.option("--tokenizer-data", "output", default="tokenizer.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write the tokenizer JSON.")
@click.option("--force", is_flag=True, help="Overwrite --tokenizer-data if it exists (e.g. a checkout's tokenizer.json).")
def train_bpe(dataset, vocab_size, reserve_tokens, case_sensitive, output, force):
    """Train a byte-level BPE tokenizer (Hugging Face's trainer) and write its tokenizer.json.

    Nothing is ever unknown: every byte is a token. A small or repetitive corpus gives fewer
    tokens than asked, and says so. Use the result with
    `femtogpt init --tokenizer bpe --tokenizer-data tokenizer.json`.

    \b
    Example:
      femtogpt train-bpe --dataset dataset.txt --vocab-size 768 --tokenizer-data tokenizer.json
    """
    from femtogpt.atomic import write_atomically as write_atomic
    from femtogpt.text.bpe import train_bpe as train
    from femtogpt.text.corpus import read_text
    from femtogpt.text.tokenizer import TokenizerError

    check_output_path(output, "--tokenizer-data", force, inputs=[("the --dataset file", dataset)])
    try:
        text = read_text(dataset, _warn)
        click.echo(f"train-bpe: {_size(len(text))} from {dataset}, vocabulary {vocab_size}")
        start = time.perf_counter()
        # the trainer draws its own bars on a terminal; when piped, these plain lines are the progress
        tok, note = train(text, vocab_size, reserve_tokens, not case_sensitive,
                          progress=sys.stderr.isatty(), warn=_warn)
    except TokenizerError as exc:
        raise UserError(f"--dataset {exc}") from None
    seconds = time.perf_counter() - start
    if note:
        click.echo(f"note: {note}")
    try:
        write_atomic(output, tok.to_json())
    except OSError as exc:  # AtomicWriteError (a full or read-only disk) is one line; the old file is kept
        raise UserError(str(exc)) from None
    click.echo(f"wrote {output}: {tok.summary()} (trained in {seconds:.1f} s)")


def _load_tokenizer(path: Path, flag="--model"):
    """A tokenizer JSON (ours, Hugging Face, a JSON array of strings) or a femtogpt model file, read and
    verified by the one validated loader (io/model_file.py: checksum, version, every field; then its
    tokenizer checked against vocab_size, io/checkpoint.py)."""
    from femtogpt.io.checkpoint import model_tokenizer
    from femtogpt.io.model_file import ModelFileError, load_model_file
    from femtogpt.text.tokenizer import TokenizerError
    from femtogpt.text.tokenizer_files import parse_tokenizer_json

    try:
        with open(path, "rb") as f:
            head = f.read(64).decode("utf-8", errors="ignore").lstrip()
    except FileNotFoundError:
        raise UserError(f"{flag} {path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot be read ({exc.strerror})") from None
    try:
        if head[:1] in ("{", "["):
            return parse_tokenizer_json(path.read_bytes().decode("utf-8"), str(path))
        return model_tokenizer(load_model_file(path))
    except ModelFileError as exc:
        if exc.foreign:
            raise UserError(f"{flag} {path}: neither a tokenizer JSON nor a femtogpt model file "
                            "(a Rust fork .dat must be imported first)") from None
        raise UserError(f"{flag} {exc}") from None      # ours, but damaged or invalid: it names the file
    except TokenizerError as exc:
        raise UserError(f"{flag} {exc}") from None      # it names the file
    except UnicodeDecodeError:
        raise UserError(f"{flag} {path}: not a tokenizer JSON (not UTF-8 text)") from None


def _shown(token: str) -> str:
    from femtogpt.text.printable import quoted

    return quoted(token)


@click.command("count-tokens")
@click.option("--model", "model_path", default="model.dat", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="A model file (or a tokenizer JSON).")
@click.option("--tokenizer-data", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="A tokenizer JSON (as train-bpe writes) to count with instead of --model's tokenizer.")
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(path_type=Path),
              help="A text file, or a directory whose files are all read.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every token's id, count, rank and text, and the total.")
@click.option("--top", type=click.IntRange(0, MAX_LIST), default=0,
              help="List only the N most frequent tokens (0: all, as everywhere).")
def count_tokens(model_path, tokenizer_data, dataset, as_json, top):
    """Count how often each token occurs in a dataset, most frequent first.

    Every token of the vocabulary is listed (zero counts too), with its id, count and 0-based
    rank; ties in count go by id. The total is the dataset's length in tokens.
    """
    from femtogpt.text.corpus import read_text
    from femtogpt.text.counts import token_counts
    from femtogpt.text.tokenizer import TokenizerError

    tok = _load_tokenizer(tokenizer_data, "--tokenizer-data") if tokenizer_data else _load_tokenizer(model_path)
    try:
        text = read_text(dataset, _warn)
    except TokenizerError as exc:
        raise UserError(f"--dataset {exc}") from None
    try:
        ids = tok.encode_large(text)
    except TokenizerError as exc:
        raise UserError(f"--model {model_path}: {exc}") from None
    rows, unknown = token_counts(tok, ids, top or None)
    if as_json:
        click.echo(json.dumps({"tokenizer": tok.summary(), "vocab_size": tok.vocab_size, "total": len(ids),
                               "unknown": unknown, "tokens": rows}, indent=1))   # ASCII: nothing raw
        return
    click.echo(f"{'rank':>6} {'id':>7} {'count':>12}  token")
    for row in rows:
        click.echo(f"{row['rank']:>6} {row['id']:>7} {row['count']:>12,}  {_shown(row['token'])}")
    unk = f", {unknown:,} <unk>" if tok.unk_id is not None else ""
    click.echo(f"total: {len(ids):,} tokens ({tok.summary()}{unk})")


@click.group()
def cache():
    """The token cache: datasets' token ids, kept so training reads a corpus once per tokenizer.

    \b
    It lives in ~/.cache/femtogpt/tokens (or $FEMTOGPT_CACHE_DIR) and holds at most
    $FEMTOGPT_CACHE_MAX_MB megabytes (default 2048): the least recently used entries go first.
    """


@cache.command("info")
def cache_info():
    """Where the cache is, how many entries it holds and their size."""
    from femtogpt.text.token_cache import cache_entries, default_cache_dir, max_cache_bytes

    entries = cache_entries()
    size = sum(f.stat().st_size for f in entries if f.exists())
    click.echo(f"{default_cache_dir()}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
               f"{_megabytes(size)} (cap {_megabytes(max_cache_bytes())})")


@cache.command("clear")
def cache_clear():
    """Delete every entry (they are rebuilt when a dataset is next read)."""
    from femtogpt.text.token_cache import clear, default_cache_dir

    n, size = clear()
    click.echo(f"Deleted {n} entr{'y' if n == 1 else 'ies'} ({_megabytes(size)}) from {default_cache_dir()}")


def _megabytes(n):
    return f"{n / 1e6:,.1f} MB"


COMMANDS = [train_bpe, count_tokens, cache]
