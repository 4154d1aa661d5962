"""The fork's toy dataset generators (reference §7), seeded, as functions returning the text.

simple_dummy: words alternating consonant/vowel; addition_dummy: "a + b = c;" lines;
simple_dummy2: copy/shift actions on random strings; simple_sequence: a periodic letter/delimiter
string; simple_sequence2: interleaved cycles with a little noise. Each takes a size in its own unit
(words, lines, attempts, groups) defaulting to the reference's count, and a `random.Random`; the
distributions are the reference scripts' (checked against their source), only seeded.

`generate_text` returns the dataset without the final newline; `file_text` returns exactly what
the reference script prints (its print() adds "\n", except simple_sequence's `end=""`).
`mask` is the reference's unused mask.py done right (it forgot to import random). The scripts in
dummy_data/ are thin wrappers over `script_main`. `TASKS` names every task once, with its settings;
how the models are scored on them is in probes.py and scoring.py.
"""
import argparse
import random
import sys
from dataclasses import dataclass
from typing import Callable

from femtogpt.atomic import write_atomically

VOWELS, CONSONANTS = "aeiou", "bcdfghjk"


def simple_dummy(size=8000, rng=None):
    """`size` words, each followed by ";\\n": starts with a consonant not among the last 3 starts,
    alternates consonant/vowel, never repeats a letter, 4 or 6 letters (even odds)."""
    rng = rng or random.Random()
    out, recent = [], []
    for _ in range(size):
        first = rng.choice([c for c in CONSONANTS if c not in recent[-3:]])
        recent.append(first)
        word = [first]
        while True:
            if len(word) == 6 or (len(word) == 4 and rng.random() < 0.5):
                break
            pool = VOWELS if word[-1] in CONSONANTS else CONSONANTS
            word.append(rng.choice([c for c in pool if c not in word]))
        out.append("".join(word) + ";\n")
    return "".join(out)


def addition_dummy(size=8000, rng=None):
    """`size` lines "a + b = a+b;" with a, b uniform in 0..100, joined by newlines."""
    rng = rng or random.Random()
    lines = []
    for _ in range(size):
        a, b = rng.randint(0, 100), rng.randint(0, 100)
        lines.append(f"{a} + {b} = {a + b};")
    return "\n".join(lines)


def shift6(s):
    return "".join(chr(ord(c) + 6) for c in s)


def dummy2_result(data, action, prev):
    """The answer of simple_dummy2 for one line (prev: the previous line's data, or None)."""
    if action == 0:
        return ""
    if action == 9:
        return "z"
    src = data if action <= 4 else prev
    part = src[:3] if action in (1, 3, 5, 7) else src[-3:]
    return shift6(part) if action in (3, 4, 7, 8) else part


def simple_dummy2(size=50_000, rng=None):
    """`size` attempts, one line each: data ([a-f]{4,8}) + action digit + result + ";"; lines that
    would need a previous line (actions 5-8 on the first) are skipped, as in the reference."""
    rng = rng or random.Random()
    lines, prev = [], None
    for _ in range(size):
        data = "".join(rng.choice("abcdef") for _ in range(rng.randint(4, 8)))
        action = rng.randint(0, 9)
        if prev is None and 5 <= action <= 8:
            continue
        lines.append(f"{data}{action}{dummy2_result(data, action, prev)};")
        prev = data
    return "\n".join(lines)


SEQ_CHARS, SEQ_DELIMS = "abcdefgh", "@#$%^"


def sequence_group(i):
    """Group i of simple_sequence: its letter and its delimiter twice, e.g. 'c$$' for i = 2."""
    return SEQ_CHARS[i % len(SEQ_CHARS)] + SEQ_DELIMS[i % len(SEQ_DELIMS)] * 2


def simple_sequence(size=2000, rng=None):
    """`size` groups letter + delimiter twice: 'a@@b##c$$d%%e^^f@@...'; deterministic (rng unused).
    The period is lcm(8, 5) = 40 groups, so the default 2,000 groups are 50 copies of one cycle."""
    return "".join(sequence_group(i) for i in range(size))


SEQ2_PARTS = ("abc", "defg", "hijkl", "mnopqrs", "tuvwxyz0123")
SEQ2_NOISE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ;\n"


SEQ2_PERIOD = 3 * 4 * 5 * 7 * 11  # 4620 lines before the first repeat (the lengths are coprime)


def sequence2_line(i):
    """Line i of simple_sequence2 without noise, newline included: e.g. 'adhmmt;\n' for i = 0."""
    s1, s2, s3, s4, s5 = SEQ2_PARTS
    return s1[i % 3] + s2[i % 4] + s3[i % 5] + s4[i % 7] * 2 + s5[i % 11] + ";\n"


def simple_sequence2(size=2000, rng=None, noise=True):
    """`size` lines of 8 characters (interleaved cycles of 3, 4, 5, 7, 7, 11); with noise each
    character is replaced with probability 0.002 by one of 64 characters."""
    rng = rng or random.Random()
    text = "".join(sequence2_line(i) for i in range(size))
    if noise:  # the reference keeps c when random() > 0.002; one draw per character
        text = "".join(rng.choice(SEQ2_NOISE_CHARS) if rng.random() < 0.002 else c for c in text)
    return text


def mask(text, rate=0.001, replacement="x", rng=None):
    """Each character replaced by `replacement` with probability `rate` (mask.py, done right:
    seeded, `random` imported, the rate checked)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    rng = rng or random.Random()
    return "".join(replacement if rng.random() < rate else c for c in text)


@dataclass(frozen=True)
class ToyTask:
    """One toy dataset. Its name (the key in TASKS) is the one list of task names: the CLI's choices,
    the dummy_data scripts and the scorers all use TASKS."""
    generate: Callable     # (size, rng=..., **options) -> text without the final newline
    unit: str              # what --size counts
    default_size: int      # the reference script's count
    trailer: str           # what the reference's print() appends after the dataset
    score_samples: int     # how many probes (simple_dummy: lines) `femtogpt score` judges by default
    metric: str            # what the headline score of tasks/scoring.py measures
    needs: str = ""        # characters its probes need the tokenizer to know (not just letters)


TASKS = {
    "simple_dummy": ToyTask(simple_dummy, "words", 8000, "\n", 200, "valid word fraction"),
    "addition_dummy": ToyTask(addition_dummy, "lines", 8000, "\n", 100, "exact-answer accuracy", "+=0123456789"),
    "simple_dummy2": ToyTask(simple_dummy2, "attempts", 50_000, "\n", 100, "mean per-action accuracy"),
    "simple_sequence": ToyTask(simple_sequence, "groups", 2000, "", 40, "exact 14-char continuation", "@#$%^"),
    "simple_sequence2": ToyTask(simple_sequence2, "lines", 2000, "\n", 100, "next-line accuracy"),
}


def generate_text(name, size=None, seed=None, **options):
    """The dataset `name` (size in the generator's unit, None: the reference's count), seeded by
    `seed` (None: random), without the final newline the reference's print() adds. options: e.g.
    noise=False for simple_sequence2 (its answers)."""
    if name not in TASKS:
        raise ValueError(f"unknown generator {name!r}; choose from {', '.join(TASKS)}")
    task = TASKS[name]
    rng = random.Random(seed)
    return task.generate(task.default_size if size is None else size, rng=rng, **options)


def file_text(name, size=None, seed=None, **options):
    """Exactly what the reference script writes to stdout (generate_text + its trailer)."""
    return generate_text(name, size, seed, **options) + TASKS[name].trailer


def script_main(name, argv=None):
    """The command line of dummy_data/<name>.py: --seed, --size, --out (stdout by default)."""
    parser = argparse.ArgumentParser(
        prog=f"{name}.py", description=f"Write the fork's {name} toy dataset (reference §7).")
    parser.add_argument("--seed", type=int, default=None, help="seed [default: random, as the reference]")
    parser.add_argument("--size", type=int, default=None,
                        help=f"number of {TASKS[name].unit} [default: {TASKS[name].default_size}]")
    parser.add_argument("--out", default=None, help="output file [default: stdout]")
    if name == "simple_sequence2":
        parser.add_argument("--no-noise", action="store_true",
                            help="no random replacements (the reference's dump(noise=False): the answers)")
    args = parser.parse_args(argv)
    if args.size is not None and args.size < 1:
        parser.error(f"--size must be at least 1, got {args.size}")
    options = {"noise": False} if getattr(args, "no_noise", False) else {}
    write_output(file_text(name, args.size, args.seed, **options), args.out)


def write_output(text, out):
    if out is None or out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(out, text)        # UTF-8, newlines as they are
