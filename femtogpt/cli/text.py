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

from femtogpt.cli.common import UserError


def _warn(msg):
    click.echo(msg, err=True)


def _size(chars):
    return f"{chars / 1e6:.1f}M characters" if chars >= 1e6 else f"{chars:,} characters"


@click.command("train-bpe")
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(path_type=Path),
              help="Corpus: a text file, or a directory whose files are all read.")
@click.option("--vocab-size", default=768, show_default=True, type=click.IntRange(min=256),
              help="Tokens to learn, the 256 byte tokens included (reserved tokens come on top).")
@click.option("--reserve-tokens", default=0, show_default=True, type=click.IntRange(min=0),
              help="Append N special tokens <|reserved_000|>, ... to fill in later without touching a model's tensors.")
@click.option("--case-sensitive/--case-insensitive", default=True, show_default=True,
              help="--case-insensitive lowercases the text before encoding.")
@click.option("--tokenizer-data", "output", default="tokenizer.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write the tokenizer JSON.")
def train_bpe(dataset, vocab_size, reserve_tokens, case_sensitive, output):
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

    if not output.parent.is_dir():
        raise UserError(f"--tokenizer-data {output}: the directory {output.parent} does not exist")
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
    write_atomic(output, tok.to_json())
    click.echo(f"wrote {output}: {tok.summary()} (trained in {seconds:.1f} s)")


def _load_tokenizer(path: Path):
    """A tokenizer JSON (ours, Hugging Face, a JSON array of strings) or a femtogpt model file, read and
    verified (checksum included) by io/model_file.py."""
    from femtogpt.io.model_file import ModelFileError, load_model_file, peek_header
    from femtogpt.text.tokenizer import TextTokenizer, TokenizerError
    from femtogpt.text.tokenizer_files import parse_tokenizer_json

    try:
        with open(path, "rb") as f:
            head = f.read(64).decode("utf-8", errors="ignore").lstrip()
    except FileNotFoundError:
        raise UserError(f"--model {path}: no such file") from None
    except OSError as exc:
        raise UserError(f"--model {path}: cannot be read ({exc.strerror})") from None
    try:
        if head[:1] in ("{", "["):
            return parse_tokenizer_json(path.read_bytes().decode("utf-8"), str(path))
        try:
            mf = load_model_file(path)
        except ModelFileError as exc:
            try:
                peek_header(path)           # a femtogpt header: the file is ours, but damaged
            except ModelFileError:
                raise UserError(f"--model {path}: neither a tokenizer JSON nor a femtogpt model file "
                                "(a Rust fork .dat must be imported first)") from None
            raise UserError(f"--model {exc}") from None
        return TextTokenizer.from_json(mf.tokenizer, mf.tokenizer_meta or {})
    except (TokenizerError, UnicodeDecodeError) as exc:
        raise UserError(f"--model {path}: {exc}") from None


@click.command("count-tokens")
@click.option("--model", "model_path", default="tokenizer.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="A model file or a tokenizer JSON.")
@click.option("--dataset", default="dataset.txt", show_default=True, type=click.Path(path_type=Path),
              help="A text file, or a directory whose files are all read.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every token's id, count, rank and text, and the total.")
@click.option("--top", type=click.IntRange(min=0), default=None, help="List only the N most frequent tokens.")
def count_tokens(model_path, dataset, as_json, top):
    """Count how often each token occurs in a dataset, most frequent first.

    Every token of the vocabulary is listed (zero counts too), with its id, count and 0-based
    rank; ties in count go by id. The total is the dataset's length in tokens.
    """
    import numpy as np

    from femtogpt.text.corpus import read_text
    from femtogpt.text.tokenizer import TokenizerError

    tok = _load_tokenizer(model_path)
    try:
        text = read_text(dataset, _warn)
    except TokenizerError as exc:
        raise UserError(f"--dataset {exc}") from None
    ids = tok.encode_large(text)
    counts = np.bincount(ids, minlength=tok.vocab_size)
    order = np.lexsort((np.arange(tok.vocab_size), -counts))       # count descending, then id
    shown = order if top is None else order[:top]
    rows = [{"count": int(counts[i]), "id": int(i), "rank": r, "token": tok.token_str(i)}
            for r, i in enumerate(shown)]
    unknown = int(counts[tok.unk_id]) if tok.unk_id is not None else 0
    if as_json:
        click.echo(json.dumps({"tokenizer": tok.summary(), "vocab_size": tok.vocab_size, "total": len(ids),
                               "unknown": unknown, "tokens": rows}, ensure_ascii=False, indent=1))
        return
    click.echo(f"{'rank':>6} {'id':>7} {'count':>12}  token")
    for row in rows:
        text_repr = json.dumps(row["token"], ensure_ascii=False)   # quotes make spaces and \n visible
        click.echo(f"{row['rank']:>6} {row['id']:>7} {row['count']:>12,}  {text_repr}")
    unk = f", {unknown:,} <unk>" if tok.unk_id is not None else ""
    click.echo(f"total: {len(ids):,} tokens ({tok.summary()}{unk})")


COMMANDS = [train_bpe, count_tokens]
