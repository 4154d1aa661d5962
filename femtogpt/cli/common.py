"""Helpers shared by the command modules: one-line errors, the options several commands take, the
checks made before any work (output paths, memory), opening and saving model files, and reading a dataset's tokens.

A helper module, not a command module: it defines no commands. Like the command modules it imports only
click and the standard library at module level; the library is imported inside the functions, so
`femtogpt --help` never loads NumPy.
"""
import os
from contextlib import contextmanager
from pathlib import Path

import click

from femtogpt.cli.flags import MAX_STEPS, MAX_UNITS, MAX_VOCAB, SCHEDULES, TOKENIZER_KINDS, FiniteFloat


class UserError(click.ClickException):
    """An expected failure: printed as `Error: <one line>`, exit code 1, no traceback."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split("\n")))


def use_engine(threads=None):
    """Run the rest of the current command inside engine.runtime.engine_threads(threads): Numba on
    one thread per physical core (or `threads`), BLAS on one, both given back when the command ends.
    Commands that run the network call this first; the others (and every --help) never load Numba."""
    from femtogpt.engine.runtime import engine_threads

    click.get_current_context().with_resource(engine_threads(threads))


def model_option(default="model.dat", **kw):
    return click.option("--model", "model_path", default=default, show_default=True,
                        type=click.Path(dir_okay=False), help=kw.pop("help", "Model file."), **kw)


def same_file(a, b):
    """Do paths a and b name the same file (links and relative paths resolved; b may not exist)?"""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path, flag, force=None, inputs=(), make_folder=False, model_output=False):
    """Check, before any work, that a command may write `path` (given as `flag`), or fail with one line.

    The path must not be one of `inputs` ((what, path) pairs, what e.g. "the --parent file": the files
    the command reads), nor a directory; its folder must exist (make_folder: create it), be a directory
    and be writable.
    force: the command's --force (an existing file, or a symlink to a missing one, is then written;
    without it both are refused); None for commands without --force, which replace an existing file
    as they always have but refuse a dangling symlink, and never replace a femtogpt model file unless
    they write one (model_output).
    """
    where = f"{flag} {path}"
    p = Path(path)
    for what, input_path in inputs:
        if input_path is not None and same_file(path, input_path):
            raise UserError(f"{where} is {what} itself; choose another name")
    target = p
    if p.is_symlink() and not p.exists():
        if not force:
            hint = ("pass --force to write through it" if force is not None
                    else "remove it or choose another name")
            raise UserError(f"{where} is a symlink to {os.readlink(p)}, which does not exist; {hint}")
        target = Path(os.path.realpath(p))
    elif p.is_dir():
        raise UserError(f"{where} is a directory; give a file name")
    elif p.exists() and force is False:
        raise UserError(f"{path} already exists; pass --force to overwrite it")
    elif p.exists() and force is None and not model_output:
        from femtogpt.io.model_file import is_model_file

        if is_model_file(p):
            raise UserError(f"{where} is a femtogpt model file; refusing to replace it (choose another name)")
    folder = target.parent
    if make_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{where}: cannot create the directory {folder}: {exc.strerror or exc}") from None
    if not folder.exists():
        raise UserError(f"{where}: the directory {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{where}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{where}: the directory {folder} is not writable")


def check_model_memory(hp, batch_size, what, dropout=False, loaded=False, hint="", units=None, workers=None):
    """Fail with one line, before anything is allocated, when training `hp` at `batch_size` needs more
    memory than this process may use (model/memory.py). loaded: the parameters and AdamW's moments
    are already in memory (count only what a step adds). units, workers: how the batch is cut and how many
    threads run its units (defaults: model/gpt.py's unit count, and the most any thread count needs)."""
    from femtogpt.model.memory import ModelTooLarge, check_fits, model_bytes, training_bytes

    from femtogpt.model.gpt import DEFAULT_UNITS

    needed = training_bytes(hp, batch_size, dropout=dropout, units=units or DEFAULT_UNITS, workers=workers)
    if hp.pos_enc == "absolute":
        needed += hp.num_tokens * hp.embedding_degree * 20  # the sinusoid table and its float temporaries
    if loaded:
        needed -= model_bytes(hp)
    try:
        check_fits(needed, what)
    except ModelTooLarge as exc:
        raise UserError(f"{exc}{hint}") from None


def check_new_model_memory(hp, hint="", default_batch=32):
    """For commands that write a new model (init, init-with, insert-layer): refuse, before it is built,
    a model that could not even be trained at batch 1 here (its parameters, AdamW and one window's
    activations); note on stderr when training it at the default batch would not fit."""
    from femtogpt.model.memory import ModelTooLarge, check_fits, gigabytes, training_bytes

    shape = (f"T {hp.num_tokens}, E {hp.embedding_degree}, L {hp.num_layers}, H {hp.num_heads}, "
             f"V {hp.vocab_size}")
    check_model_memory(hp, 1, f"training this model ({shape}) even at batch 1", hint=hint)
    try:
        check_fits(training_bytes(hp, default_batch))
    except ModelTooLarge:
        click.echo(f"note: training this model at --batch-size {default_batch} needs about "
                   f"{gigabytes(training_bytes(hp, default_batch))}, more than this machine has available: "
                   "train it with a smaller --batch-size", err=True)


def read_model_bytes_or_fail(path):
    """A model file's bytes, checksum verified (io/model_file.py), or fail with one line."""
    from femtogpt.io.model_file import ModelFileError, read_model_bytes

    try:
        return read_model_bytes(path)
    except ModelFileError as exc:
        raise UserError(str(exc)) from None


def open_checkpoint(path, data=None):
    """Load a model file as a Checkpoint (from `data`, its bytes, when already read), or fail with one line."""
    from femtogpt.io.checkpoint import load
    from femtogpt.io.model_file import ModelFileError
    from femtogpt.text.tokenizer import TokenizerError

    try:
        return load(path, data)
    except (ModelFileError, TokenizerError) as exc:
        raise UserError(str(exc)) from None


def save_checkpoint(ckpt, path):
    """Save a Checkpoint atomically, or fail with one line (the old file, if any, is untouched)."""
    from femtogpt.io.model_file import ModelFileError

    try:
        ckpt.save(path)
    except ModelFileError as exc:
        raise UserError(str(exc)) from None


def tokenizer_options(func):
    """The tokenizer flags shared by init and init-with."""
    options = [
        click.option("--tokenizer", type=TOKENIZER_KINDS, default="ascii",
                     help="Tokenizer kind: ascii (V=101), char (the data's characters), byte (256), "
                          "bpe (a tokenizer JSON; the shipped default if no --tokenizer-data)."),
        click.option("--tokenizer-data", type=click.Path(exists=True),
                     help="char: a text file or directory; bpe: a tokenizer JSON or a JSON array of tokens."),
        click.option("--case-sensitive/--case-insensitive", default=True,
                     help="--case-insensitive lowercases text before encoding."),
        click.option("--reserve-tokens", type=click.IntRange(0, MAX_VOCAB), default=0,
                     help="Append N reserved special tokens <|reserved_000|>... to the vocabulary."),
        click.option("--max-vocab", type=click.IntRange(2, MAX_VOCAB), default=None,
                     help="char: keep at most this many tokens (most frequent characters first)."),
        click.option("--tokenizer-from", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Use the tokenizer of this model file as it is (its kind and settings; the "
                          "flags above are then not given)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def training_settings_options(func):
    """The flags of the training settings stored in a model file (config.TRAINING_SETTINGS; see
    train/settings.py), shared by train and grow: the batch, the learning-rate schedule and AdamW."""
    options = [
        click.option("--batch-size", type=click.IntRange(min=1), default=32,
                     help="Windows of T+1 tokens per step (checked against this machine's memory first)."),
        click.option("--units", type=click.IntRange(1, MAX_UNITS), default=2, show_default=True,
                     help="Work units each batch is cut into; the threads (and MPI processes) take them as they "
                          "free up. Like --batch-size it is part of the result, --threads never is. More units: "
                          "work for more cores and less memory, one more pass over the gradients per unit."),
        click.option("--dropout", type=FiniteFloat(0.0, 1.0, max_open=True), default=0.0,
                     help="Dropout on attention probabilities and after each attention projection."),
        click.option("--lr", type=FiniteFloat(0.0, 10.0), default=1e-3, help="Peak learning rate."),
        click.option("--min-lr", type=FiniteFloat(0.0, 10.0), default=1e-5,
                     help="Learning-rate floor (at most --lr)."),
        click.option("--warmup", type=click.IntRange(0, MAX_STEPS), default=100,
                     help="Linear warm-up steps from 0."),
        click.option("--decay-steps", type=click.IntRange(1, MAX_STEPS), default=50_000,
                     help="Decay steps after warm-up, from --lr down to --min-lr."),
        click.option("--schedule", type=SCHEDULES, default="linear", show_default=True,
                     help="Learning-rate decay after warm-up (linear: the reference's)."),
        click.option("--weight-decay", type=FiniteFloat(0.0, 10.0), default=0.01, show_default=True,
                     help="AdamW's decoupled weight decay, on every parameter as in the reference."),
        click.option("--beta1", type=FiniteFloat(0.0, 1.0, max_open=True), default=0.9, show_default=True,
                     help="AdamW's first-moment decay."),
        click.option("--beta2", type=FiniteFloat(0.0, 1.0, max_open=True), default=0.999, show_default=True,
                     help="AdamW's second-moment decay."),
        click.option("--eps", type=FiniteFloat(0.0, 1.0, min_open=True), default=1e-8, show_default=True,
                     help="AdamW's epsilon, added to the root of the second moment."),
        click.option("--grad-clip", type=FiniteFloat(0.0, 1e6), default=0.0, show_default=True,
                     help="Scale the gradient down to this global L2 norm when it is above it (0: off)."),
        click.option("--grad-accum", type=click.IntRange(1, 1024), default=1, show_default=True,
                     help="Micro-batches of --batch-size windows per step (the same as N times the batch in N "
                          "times the units; memory stays one unit's per thread)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_tokenizer_from_flags(tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab,
                               tokenizer_from=None):
    """The tokenizer that `tokenizer_options` describe; its notes (e.g. characters dropped by
    --max-vocab) go to stderr."""
    from femtogpt.text.build import build_tokenizer
    from femtogpt.text.tokenizer import TokenizerError

    if tokenizer_from is not None:
        return _tokenizer_of_model(tokenizer_from)

    if tokenizer_data is not None and tokenizer not in ("char", "bpe"):
        raise UserError(f"--tokenizer-data is read only by --tokenizer char or bpe, not {tokenizer}; "
                        f"add --tokenizer bpe (a tokenizer JSON) or --tokenizer char (a text corpus)")
    if tokenizer == "char" and tokenizer_data is None:
        if not Path("dataset.txt").exists():
            raise UserError("--tokenizer char needs --tokenizer-data (a text file or directory)")
        tokenizer_data = "dataset.txt"  # the reference's default
    if tokenizer == "bpe" and tokenizer_data is None:
        local = " (./tokenizer.json here was not read: pass --tokenizer-data tokenizer.json for it)" \
            if Path("tokenizer.json").is_file() else ""
        click.echo(f"note: --tokenizer bpe without --tokenizer-data uses femtogpt's packaged default "
                   f"tokenizer{local}", err=True)
    try:
        tok = build_tokenizer(tokenizer, tokenizer_data, case_insensitive=not case_sensitive,
                              reserve_tokens=reserve_tokens, max_vocab=max_vocab)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None
    for note in tok.notes:
        click.echo(f"note: {note}", err=True)
    return tok


def _tokenizer_of_model(path):
    """--tokenizer-from MODEL: that model's tokenizer, read through the validated loader; the other
    tokenizer flags would contradict it, so giving one is an error."""
    ctx = click.get_current_context()
    given = [f"--{name.replace('_', '-')}" for name in ("tokenizer", "tokenizer_data", "case_sensitive",
                                                        "reserve_tokens", "max_vocab")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
    if given:
        raise UserError(f"--tokenizer-from takes {path}'s tokenizer as it is; drop {', '.join(given)}")
    from femtogpt.io.checkpoint import model_tokenizer
    from femtogpt.io.model_file import ModelFileError, load_model_file

    try:
        return model_tokenizer(load_model_file(Path(path)))
    except ModelFileError as exc:
        raise UserError(f"--tokenizer-from {exc}") from None


def load_dataset_tokens(tokenizer, dataset, show_progress):
    """A dataset's token ids through the token cache, or fail with one line."""
    from femtogpt.text.token_cache import encode_file_cached
    from femtogpt.text.tokenizer import TokenizerError

    try:
        return encode_file_cached(tokenizer, dataset, progress=show_progress)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None


def lock_model_file(path, command):
    """Hold the writer's lock of model file `path` until the command ends (femtogpt/io/lock.py): a
    second writer of the same file is refused with one line naming the holder; readers take no lock."""
    from femtogpt.io.lock import LockError, model_lock

    try:
        click.get_current_context().with_resource(model_lock(path, command))
    except LockError as exc:
        raise UserError(str(exc)) from None


@contextmanager
def plot_errors(flag, out):
    """Around drawing a picture to `out` (given as `flag`): a missing matplotlib, a format it cannot
    write and a failed write each become one line."""
    from femtogpt.tools.plotting import PlotUnavailable, UnsupportedFormat

    try:
        yield
    except PlotUnavailable as exc:
        raise UserError(str(exc)) from None
    except UnsupportedFormat as exc:
        raise UserError(f"{flag} {out}: {exc}") from None
    except OSError as exc:
        raise UserError(f"{flag} {out}: cannot write: {exc.strerror or exc}") from None
