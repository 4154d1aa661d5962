"""Shared helpers of the experiments: data, models, training, scores, results, plots.

Everything goes through the library (io.checkpoint.create, train.loop.run_training, growth.surgery,
tasks.scoring), not the CLI, so one process holds every model of an experiment. Training is the
library's loop, the CLI's `train` without its display and file saves: the same seeded batches
(keyed by seed and optimizer step), and TrainSession / TrainStep / Eval logs appended to the model,
so a model saved with `save_model` can be drawn with `femtogpt plot`. Each script writes
results/<name>.json (numbers, settings, wall time, machine) and results/<name>.png when matplotlib is
installed, both atomically; `parse_args` also enters the engine's runtime settings for the whole run.
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from femtogpt.atomic import write_atomically  # noqa: E402
from femtogpt.engine.runtime import engine_threads  # noqa: E402
from femtogpt.io.logs import EVAL, new_log  # noqa: E402
from femtogpt.config import Hyperparameters  # noqa: E402
from femtogpt.tasks.toy_data import file_text  # noqa: E402
from femtogpt.train.evaluate import evaluate_tokens  # noqa: E402
from femtogpt.io.checkpoint import create  # noqa: E402
from femtogpt.text.build import build_tokenizer  # noqa: E402
from femtogpt.train.loop import TrainOptions, run_training  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
_RUNTIME = contextlib.ExitStack()


def parse_args(doc, configure=None):
    """--smoke, --out-dir, --seed (plus what `configure(parser)` adds)."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--smoke", action="store_true", help="a few steps at tiny sizes (for CI, < 20 s)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="results directory [default: experiments/results; with --smoke a temp dir]")
    p.add_argument("--seed", type=int, default=0, help="base seed of data, init and batches")
    if configure:
        configure(p)
    args = p.parse_args()
    if args.out_dir is None:
        args.out_dir = Path(tempfile.gettempdir()) / "femtogpt-smoke" if args.smoke else RESULTS
    args.out_dir.mkdir(parents=True, exist_ok=True)
    _RUNTIME.enter_context(engine_threads())  # threads, BLAS and the kernel cache as the CLI has them, to the end
    return args


def say(*parts):
    print(*parts, flush=True)


# data ---------------------------------------------------------------------------------------------
_TOKENIZERS = {}


def tokenizer(kind="ascii"):
    if kind not in _TOKENIZERS:
        _TOKENIZERS[kind] = build_tokenizer(kind)
    return _TOKENIZERS[kind]


def encode(tok, text):
    return np.asarray(tok.encode(text), dtype=np.int64)


def dummy_tokens(tok, name, size=None, seed=0, **options):
    """A dataset exactly as `python dummy_data/<name>.py --seed S --size N` writes it, encoded."""
    return encode(tok, file_text(name, size, seed, **options))


CODE_MODULES = ("argparse", "textwrap", "difflib", "string", "heapq", "bisect", "shlex", "fractions",
                "calendar", "configparser", "csv", "dataclasses", "enum", "functools", "glob",
                "gettext", "inspect", "ipaddress", "pprint", "statistics")


def code_corpus(max_chars=None):
    """'Other text' for a foundation model, like the fork's Rust sources: Python's own standard
    library modules in CODE_MODULES, concatenated (fixed for a given Python version)."""
    import importlib

    parts = []
    for name in CODE_MODULES:
        path = importlib.import_module(name).__file__
        parts.append(Path(path).read_text(encoding="utf-8"))
    text = "\n".join(parts)
    return text if max_chars is None else text[:max_chars]


# models and training ------------------------------------------------------------------------------
def new_session(tok, E, L, H, T, pos_enc="none", seed=0):
    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=T, embedding_degree=E, num_layers=L,
                         num_heads=H, pos_enc=pos_enc).validate()
    return create(hp, tok, seed)


def describe(session):
    hp = session.hp
    return (f"E{hp.embedding_degree} L{hp.num_layers} H{hp.num_heads} T{hp.num_tokens} "
            f"pe={hp.pos_enc} V={hp.vocab_size} ({hp.num_params():,} params)")


@dataclass
class Curve:
    """One model's losses: train[i] is the loss of its (i+1)-th step in this experiment; val holds
    (steps so far, validation loss); events (steps so far, label), e.g. a layer insertion."""
    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    events: list = field(default_factory=list)
    seconds: float = 0.0

    def tail(self, n=10):
        """Mean of the last n training losses (a single step's loss is noisy)."""
        return float(np.mean(self.train[-n:])) if self.train else None

    def to_json(self):
        return {"train": [round(x, 5) for x in self.train], "val": [[s, round(v, 5)] for s, v in self.val],
                "events": self.events, "seconds": round(self.seconds, 2)}

    @classmethod
    def from_json(cls, data):
        """The Curve `to_json` wrote (losses as rounded there)."""
        return cls(list(data["train"]), [tuple(v) for v in data["val"]], [tuple(e) for e in data["events"]],
                   data.get("seconds", 0.0))


def eval_loss(session, tokens, max_windows=64):
    return float(evaluate_tokens(session.model, tokens, max_windows=max_windows)[0])


class _CurveDisplay:
    """run_training's display for an experiment: records each step's loss in the Curve, evaluates on
    `val_tokens` every `eval_every` steps of this call and after its last step, and prints a line every
    `print_every` steps of this call and after its last step."""

    def __init__(self, session, curve, steps, val_tokens, eval_every, label, print_every):
        self.session, self.curve, self.steps, self.val_tokens = session, curve, steps, val_tokens
        self.eval_every, self.label, self.print_every = eval_every, label, print_every
        self.done, self.t0 = 0, time.perf_counter()

    def step(self, step, loss, lr, elapsed):
        self.curve.train.append(loss)
        self.done += 1
        last = self.done == self.steps
        if self.val_tokens is not None and self.eval_every and (self.done % self.eval_every == 0 or last):
            v = eval_loss(self.session, self.val_tokens)
            self.curve.val.append((len(self.curve.train), v))
            self.session.logs.append(new_log(EVAL, step=step, val_loss=v))
        if self.print_every and (self.done % self.print_every == 0 or last):
            val = f" val {self.curve.val[-1][1]:.4f}" if self.curve.val else ""
            say(f"  {self.label} step {len(self.curve.train)} loss {loss:.4f} (avg10 {self.curve.tail():.4f}){val} "
                f"lr {lr:.1e} {time.perf_counter() - self.t0:.0f}s")

    def validation(self, step, val_loss):  # run_training's own validation is off (val_fraction 0)
        pass

    def message(self, text):
        say(text)

    def close(self):
        pass


def train(session, tokens, steps, seed, curve=None, dropout=0.0, batch_size=32, val_tokens=None,
          eval_every=0, label="", print_every=100):
    """`steps` seeded training steps with the library's loop (the CLI's train, in memory, without file
    saves). Returns the Curve (appended to)."""
    curve = Curve() if curve is None else curve
    display = _CurveDisplay(session, curve, steps, val_tokens, eval_every, label, print_every)
    options = TrainOptions(steps=steps, seed=seed, batch_size=batch_size, dropout=dropout, save_every=0)
    result = run_training(session, tokens, options, save=lambda: None, display=display,
                          dataset_info={"dataset": label})
    curve.seconds += time.perf_counter() - display.t0
    if result.failure:
        raise ArithmeticError(f"{label}: {result.failure}")
    return curve


def score(session, task, samples=None, seed=0, temperature=None):
    from femtogpt.tasks.scoring import run_task

    return run_task(session.model, session.tokenizer, task, samples, seed, temperature)


def greedy(session, prompt, count):
    from femtogpt.model.generate import generate

    tok = session.tokenizer
    return tok.decode(generate(session.model, [int(i) for i in tok.encode(prompt)], count, temperature=0))


def save_model(session, out_dir, name):
    path = Path(out_dir) / f"{name}.dat"
    session.save(path)
    return path


# results ------------------------------------------------------------------------------------------
def machine():
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    import numba

    return {"cpus": os.cpu_count(), "numba_threads": numba.get_num_threads(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "commit": commit,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}


def write_results(args, name, data, wall_seconds):
    out = Path(args.out_dir) / f"{name}.json"
    record = {"experiment": name, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
              "smoke": bool(args.smoke), "seed": args.seed, "wall_seconds": round(wall_seconds, 1),
              "machine": machine(), **data}
    write_atomically(out, json.dumps(record, indent=1) + "\n")
    say(f"wrote {out} (wall time {wall_seconds:.0f} s)")
    return out


def plot(args, name, series, title, events=(), hlines=(), ylabel="loss", xlabel="step"):
    """results/<name>.png if matplotlib is installed; series as femtogpt.tools.plotting.plot_series."""
    from femtogpt.tools.plotting import have_matplotlib, plot_series

    if not have_matplotlib():
        say("matplotlib not installed: no picture (pip install 'femtogpt[plot]')")
        return None
    out = Path(args.out_dir) / f"{name}.png"
    plot_series(series, out, title=title, events=events, hlines=hlines, ylabel=ylabel, xlabel=xlabel)
    say(f"wrote {out}")
    return out


def curve_series(curve, label, color=None, smooth_window=10, with_val=True, offset=0):
    """Plot series of a Curve: smoothed training loss, and validation points if any."""
    from femtogpt.tools.plotting import smooth

    kw = {} if color is None else {"color": color}
    xs = [offset + i + 1 for i in range(len(curve.train))]
    out = [{"x": xs, "y": smooth(curve.train, smooth_window), "label": f"{label}", "alpha": 0.9, **kw}]
    if with_val and curve.val:
        out.append({"x": [offset + s for s, _ in curve.val], "y": [v for _, v in curve.val], "style": "o--",
                    "label": f"{label} (validation)", "alpha": 0.7, **kw})
    return out
