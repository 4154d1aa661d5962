"""Helpers shared by the command modules: one-line errors, the options several commands take, opening
and saving model files, and reading a dataset's tokens.

A helper module, not a command module: it defines no commands. Like the command modules it imports only
click and the standard library at module level; the library is imported inside the functions, so
`femtogpt --help` never loads NumPy.
"""
import os
from pathlib import Path

import click


class UserError(click.ClickException):
    """An expected failure: printed as `Error: <one line>`, exit code 1, no traceback."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split("\n")))


class LibraryChoice(click.Choice):
    """A click.Choice over a list the library owns, named "module:attribute" (a tuple, or a dict whose
    keys are the choices) and imported only when a command's own help or its parsing needs it: the
    list's module may import NumPy, which `femtogpt --help` must not."""

    def __init__(self, name, case_sensitive=True):
        self._name, self._choices = name, None
        super().__init__((), case_sensitive)

    @property
    def choices(self):
        if self._choices is None:
            import importlib

            module, attribute = self._name.split(":")
            self._choices = tuple(getattr(importlib.import_module(module), attribute))
        return self._choices

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns the (empty) tuple: keep loading lazily
        pass


TOKENIZER_KINDS = LibraryChoice("femtogpt.config:TOKENIZER_KINDS")
POS_ENCODINGS = LibraryChoice("femtogpt.config:POS_ENCODINGS")
TOY_TASKS = LibraryChoice("femtogpt.tasks.toy_data:TASKS")


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


def check_new_file(path, force):
    if Path(path).exists() and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")


def open_checkpoint(path):
    """Load a model file as a Checkpoint, or fail with one line."""
    from femtogpt.io.checkpoint import load
    from femtogpt.io.model_file import ModelFileError
    from femtogpt.text.tokenizer import TokenizerError

    try:
        return load(path)
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
        click.option("--reserve-tokens", type=click.IntRange(min=0), default=0,
                     help="Append N reserved special tokens <|reserved_000|>... to the vocabulary."),
        click.option("--max-vocab", type=click.IntRange(min=2), default=None,
                     help="char: keep at most this many tokens (most frequent characters first)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_tokenizer_from_flags(tokenizer, tokenizer_data, case_sensitive, reserve_tokens, max_vocab):
    """The tokenizer that `tokenizer_options` describe; its notes (e.g. characters dropped by
    --max-vocab) go to stderr."""
    from femtogpt.text.build import build_tokenizer
    from femtogpt.text.tokenizer import TokenizerError

    if tokenizer == "char" and tokenizer_data is None:
        if not Path("dataset.txt").exists():
            raise UserError("--tokenizer char needs --tokenizer-data (a text file or directory)")
        tokenizer_data = "dataset.txt"  # the reference's default
    try:
        tok = build_tokenizer(tokenizer, tokenizer_data, case_insensitive=not case_sensitive,
                              reserve_tokens=reserve_tokens, max_vocab=max_vocab)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None
    for note in tok.notes:
        click.echo(f"note: {note}", err=True)
    return tok


def load_dataset_tokens(tokenizer, dataset, show_progress):
    """A dataset's token ids through the token cache, or fail with one line."""
    from femtogpt.text.token_cache import encode_file_cached
    from femtogpt.text.tokenizer import TokenizerError

    try:
        return encode_file_cached(tokenizer, dataset, progress=show_progress)
    except TokenizerError as exc:
        raise UserError(str(exc)) from None
