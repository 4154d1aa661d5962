"""Shared helpers of the experiments: data, models, a seeded training loop, scores, results, plots.

Everything goes through the library (session.create, training.train_step, surgery, scoring), not
the CLI, so one process holds every model of an experiment. Training here is the CLI's `train`
without its display and file saves: the same seeded batches (sample_batch keyed by seed and
optimizer step), and TrainStep / Eval logs appended to the session, so a model saved with
`save_model` can be drawn with `femtogpt plot`. Each script writes results/<name>.json (numbers,
settings, wall time, machine) and results/<name>.png when matplotlib is installed.
"""
import argparse
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

from femtogpt.io.logs import TRAIN_STEP, new_log  # noqa: E402
from femtogpt.config import Hyperparameters  # noqa: E402
from femtogpt.tasks.toy_data import file_text  # noqa: E402
from femtogpt.train.evaluate import evaluate_tokens  # noqa: E402
from femtogpt.io.checkpoint import create  # noqa: E402
from femtogpt.text.tokenizer import build_tokenizer  # noqa: E402
from femtogpt.train.step import sample_batch, train_step  # noqa: E402

RESULTS = ROOT / "experiments" / "results"


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


def eval_loss(session, tokens, max_windows=64):
    return float(evaluate_tokens(session.model, tokens, max_windows=max_windows)[0])


def train(session, tokens, steps, seed, curve=None, dropout=0.0, batch_size=32, val_tokens=None,
          eval_every=0, label="", print_every=100):
    """`steps` seeded training steps (the CLI's train, in memory). Returns the Curve (appended to)."""
    curve = Curve() if curve is None else curve
    opt = session.ensure_optimizer()
    T = session.hp.num_tokens
    session.logs.append(new_log("TrainSession", dropout=dropout, seed=seed, batch_size=batch_size,
                                start_step=opt.step, dataset=label))
    t0 = time.perf_counter()
    for i in range(steps):
        ids, targets = sample_batch(tokens, batch_size, T, seed, opt.step)
        ts = time.perf_counter()
        loss, lr = train_step(session.model, opt, ids, targets, dropout, seed)
        session.logs.append(new_log(TRAIN_STEP, step=int(opt.step), loss=float(loss), elapsed_ms=int((time.perf_counter() - ts) * 1000), lr=float(lr)))
        curve.train.append(loss)
        last = i + 1 == steps
        if val_tokens is not None and eval_every and ((i + 1) % eval_every == 0 or last):
            v = eval_loss(session, val_tokens)
            curve.val.append((len(curve.train), v))
            session.logs.append(new_log("Eval", step=opt.step, val_loss=v))
        if print_every and ((i + 1) % print_every == 0 or last):
            val = f" val {curve.val[-1][1]:.4f}" if curve.val else ""
            say(f"  {label} step {len(curve.train)} loss {loss:.4f} (avg10 {curve.tail():.4f}){val} "
                f"lr {lr:.1e} {time.perf_counter() - t0:.0f}s")
    curve.seconds += time.perf_counter() - t0
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
    out.write_text(json.dumps(record, indent=1) + "\n")
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
