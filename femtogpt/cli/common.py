"""Helpers shared by the commands: one-line errors, and the options several commands take."""
import os

import click


class UserError(click.ClickException):
    """An expected failure: printed as `Error: <one line>`, exit code 1, no traceback."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split("\n")))


def model_option(default="model.dat", **kw):
    return click.option("--model", "model_path", default=default, show_default=True,
                        type=click.Path(dir_okay=False), help=kw.pop("help", "Model file."), **kw)


def same_file(a, b):
    """Do paths a and b name the same file (links and relative paths resolved; b may not exist)?"""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)
