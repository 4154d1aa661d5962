"""The types of the command line's flags: finite bounded numbers, seeds, thread counts, the bounds
themselves, and choices read lazily from the library's own lists.

A helper module for the command modules (it defines no commands); it imports only click and the
standard library, so `femtogpt --help` never loads NumPy.
"""
import math
import os

import click


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


# ---------------------------------------------------------------- flag types and bounds
# Every numeric flag has a type that refuses NaN and infinities, and a sane upper bound (or, for model
# sizes and batch sizes, a memory check before any work: check_model_memory). tests/test_cli_flags.py
# walks every command's options and holds them to it.

MAX_STEPS = 10**9          # --steps, --warmup, --decay-steps, --save-every, ...: stored as 64-bit integers
MAX_GENERATED = 10**7      # tokens generated in one go (infer --count, train --sample-len)
MAX_VOCAB = 1_000_000      # --vocab-size, --reserve-tokens, --max-vocab: a vocabulary is at most this
MAX_LIST = 10**9           # --limit, --top, --top-k: lines or tokens kept (--limit and --top 0: all)
MAX_UNITS = 64             # train --units: work units a batch is cut into
SEED_MAX = 2**63 - 1       # seeds are 0..2**63-1 everywhere (NumPy refuses negative seeds; see SeedType)


class FiniteFloat(click.FloatRange):
    """A click.FloatRange that also refuses nan, inf and -inf. Click's own passes nan through every
    range (each comparison with nan is false), and a NaN or infinite learning rate, temperature or
    time spreads into every weight, sample or timer."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class TemperatureType(FiniteFloat):
    """A sampling temperature: 0 (greedy), or from 1e-6 to 100. Below 1e-6 logits / temperature can
    overflow to inf (and the softmax to NaN); such a temperature is greedy in all but name."""

    MIN_POSITIVE = 1e-6

    def __init__(self, max=100.0):
        super().__init__(0.0, max)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if 0 < number < self.MIN_POSITIVE:
            self.fail(f"{number:g} is too small: use 0 for greedy sampling, or at least "
                      f"{self.MIN_POSITIVE:g}.", param, ctx)
        return number


class SeedType(click.IntRange):
    """A seed: an integer from 0 to 2**63-1. Negative seeds are refused, in every command alike:
    NumPy's generators take only non-negative seeds, and a mapping of -1 onto some positive seed
    would make two seeds silently give one result (Python's random already treats -N as N)."""

    name = "seed"

    def __init__(self):
        super().__init__(0, SEED_MAX)

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if not 0 <= number <= SEED_MAX:
            self.fail(f"{number} is not a seed: use an integer from 0 to 2**63-1 (negative seeds are "
                      f"refused).", param, ctx)
        return number

    def _describe_range(self):
        return "0<=x<2**63"


def usable_cpus():
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class ThreadCount(click.IntRange):
    """--threads: at least 1; more than the CPUs this process may run on is capped to them, with a
    note on stderr (OpenMP asked for 100,000 threads crashed the process)."""

    def __init__(self):
        super().__init__(min=1)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        cpus = usable_cpus()
        if number > cpus:
            click.echo(f"note: --threads {number}: this process may run on {cpus} CPU"
                       f"{'s' if cpus > 1 else ''}; using {cpus}", err=True)
            number = cpus
        return number


class HiddenAliases(click.Option):
    """An option with old spellings kept working for scripts (e.g. init-with's --parent for --input)
    that --help does not show: only the first name is listed."""

    def get_help_record(self, ctx):
        opts = self.opts
        self.opts = opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts


SEED = SeedType()
THREADS = ThreadCount()


TOKENIZER_KINDS = LibraryChoice("femtogpt.config:TOKENIZER_KINDS")
POS_ENCODINGS = LibraryChoice("femtogpt.config:POS_ENCODINGS")
TOY_TASKS = LibraryChoice("femtogpt.tasks.toy_data:TASKS")
SCHEDULES = LibraryChoice("femtogpt.config:SCHEDULES")
