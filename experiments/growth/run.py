"""Growth experiments: init-with against a random init, and the loss jump of insert-layer per init.

    python experiments/growth/run.py            # the full run (a few minutes on 2 cores): results.json, README.md
    python experiments/growth/run.py --smoke    # a seconds-long check of the script; writes to a temp dir
    python experiments/growth/run.py --readme-only   # README.md again from results.json

(1) init-with. A parent (ascii tokenizer) is trained on simple_dummy text. Children for a byte-level BPE
    trained on the same text are trained the same number of steps on the same batches: a random init,
    init-with (the reference: fresh embeddings and head), and init-with --keep-shared-tokens. The
    validation loss (the last 10% of the text, in the child's tokens) is recorded along the way.
(2) insert-layer. For every insertion index and several parents, the validation loss right after the
    insertion for each init; then, for two indices, M more training steps for each init and optimizer
    treatment, next to the parent simply trained on (no insertion).
Everything is seeded: the same command gives the same numbers. Numba runs single-threaded by default:
the kernels give the same bits at any thread count, and for models this small one thread is fastest
(on a shared machine, more threads than free cores slow the steps down many times).
"""
import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from femtogpt.atomic import write_atomically  # noqa: E402
from femtogpt.config import Hyperparameters, OptimizerConfig  # noqa: E402
from femtogpt.engine.runtime import engine_threads  # noqa: E402
from femtogpt.tasks.toy_data import generate_text  # noqa: E402
from femtogpt.train.evaluate import evaluate_tokens  # noqa: E402
from femtogpt.io.checkpoint import create, from_model_file  # noqa: E402
from femtogpt.engine.params import named_views  # noqa: E402
from femtogpt.growth.surgery import init_with, insert_layer, layer_names, rename_layer  # noqa: E402
from femtogpt.text.bpe import train_bpe  # noqa: E402
from femtogpt.text.build import build_tokenizer  # noqa: E402
from femtogpt.train.loop import TrainOptions, run_training  # noqa: E402
from femtogpt.train.progress import SilentDisplay  # noqa: E402
from report import readme  # noqa: E402  (experiments/growth/report.py, beside this script)

HERE = Path(__file__).resolve().parent
FULL = dict(words=8000, E=48, L=3, H=4, T=24, batch=32, parent_steps=1000, seeds=[0, 1, 2],
            bpe_vocab=320, child_steps=250, child_evals=[0, 10, 25, 50, 100, 250],
            after_steps=200, after_evals=[0, 10, 50, 100, 200], after_positions=[1, 3])
SMOKE = dict(words=600, E=16, L=2, H=2, T=8, batch=8, parent_steps=20, seeds=[0],
             bpe_vocab=270, child_steps=6, child_evals=[0, 3, 6],
             after_steps=4, after_evals=[0, 2, 4], after_positions=[1])
CONFIG = OptimizerConfig()  # the reference schedule: lr 1e-3, warm-up 100 steps from 0
JUMP_INITS = ("random", "near-identity", "near-identity, LN copied from a neighbour",
              "LN gains 1, proj/ff2 random")
ARMS = (("no insertion (train on)", None, False), ("random + reset optimizer (the reference)", "random", True),
        ("random, optimizer kept", "random", False), ("near-identity, optimizer kept (default)", "near-identity", False),
        ("near-identity, kept, new layer's v from its neighbour", "near-identity, v from a neighbour", False),
        ("near-identity + reset optimizer", "near-identity", True))


def split(tokens):
    cut = int(len(tokens) * 0.9)
    return tokens[:cut], tokens[cut:]


def val_loss(session, val):
    return evaluate_tokens(session.model, val)[0]


class _Evals(SilentDisplay):
    """run_training's display here: keeps each step's training loss and the validation loss after the
    steps listed in `evals` (counted in this run)."""

    def __init__(self, session, val, evals, out, losses):
        self.session, self.val, self.evals, self.out, self.losses = session, val, evals, out, losses

    def step(self, step, loss, lr, elapsed):
        self.losses.append(loss)
        if len(self.losses) in self.evals:
            self.out[len(self.losses)] = val_loss(self.session, self.val)



def train(session, tokens, steps, seed, val, evals, batch):
    """Train `steps` steps on batches keyed by (seed, 1_000_000 + i), not by the optimizer step, so every
    arm sees the same data whether its optimizer was kept or reset. Returns ({steps done: validation
    loss} at `evals`, [training losses])."""
    session.ensure_optimizer(CONFIG)
    out, losses = {}, []
    if 0 in evals:
        out[0] = val_loss(session, val)
    options = TrainOptions(steps=steps, seed=seed, batch_size=batch, save_every=0, batch_offset=1_000_000)
    result = run_training(session, tokens, options, save=lambda: None, display=_Evals(session, val, evals, out, losses))
    if result.failure:
        raise ArithmeticError(result.failure)
    return out, losses


def clone(session):
    return from_model_file(session.to_model_file())


def _neighbour(k, L):
    """In the grown model: the old layer that now follows the new layer k, or precedes it when appended."""
    return k + 1 if k < L else k - 1


def make_variant(parent, k, kind, seed, reset=False):
    """The parent with a layer inserted at k, initialised as `kind` (see JUMP_INITS)."""
    if kind in ("random", "near-identity"):
        return insert_layer(parent, k, init=kind, seed=seed, reset_optimizer=reset)[0]
    if kind == "near-identity, v from a neighbour":  # an alternative to zero moments for the new layer
        grown = insert_layer(parent, k, init="near-identity", seed=seed, reset_optimizer=reset)[0]
        v = named_views(grown.hp, grown.optimizer.v)
        for name in layer_names(grown.hp, k):
            v[name][...] = v[rename_layer(name, _neighbour(k, parent.hp.num_layers))]
        return grown
    if kind == "near-identity, LN copied from a neighbour":
        grown = insert_layer(parent, k, init="near-identity", seed=seed, reset_optimizer=reset)[0]
        p = grown.model.params.named()
        src = _neighbour(k, parent.hp.num_layers)
        for part in ("norm", "atten_norm"):
            for what in ("coeff", "bias"):
                p[f"{part}_{k}_{what}"][...] = p[f"{part}_{src}_{what}"]
        return grown
    if kind == "LN gains 1, proj/ff2 random":
        grown = insert_layer(parent, k, init="random", seed=seed, reset_optimizer=reset)[0]
        p = grown.model.params.named()
        for part in ("norm", "atten_norm"):
            p[f"{part}_{k}_coeff"][...] = 1.0
            p[f"{part}_{k}_bias"][...] = 0.0
        return grown
    raise ValueError(kind)


def experiment(cfg, log):
    t_start = time.time()
    text = generate_text("simple_dummy", cfg["words"], seed=1234)
    ascii_tok = build_tokenizer("ascii")
    bpe_tok, _ = train_bpe(text, cfg["bpe_vocab"])
    p_train, p_val = split(ascii_tok.encode(text))
    c_train, c_val = split(bpe_tok.encode(text))
    hp = Hyperparameters(vocab_size=ascii_tok.vocab_size, num_tokens=cfg["T"], embedding_degree=cfg["E"],
                         num_layers=cfg["L"], num_heads=cfg["H"], pos_enc="none")
    results = {"config": {**cfg, "optimizer": vars(CONFIG), "dataset": "simple_dummy, seed 1234",
                          "parent_tokenizer": ascii_tok.summary(), "child_tokenizer": bpe_tok.summary(),
                          "numba_threads": os.environ.get("NUMBA_NUM_THREADS")},
               "parents": [], "init_with": [], "insert_jump": [], "insert_after": []}

    parents = {}
    for seed in cfg["seeds"]:
        parent = create(hp, ascii_tok, seed=seed)
        evals, losses = train(parent, p_train, cfg["parent_steps"], seed, p_val, {cfg["parent_steps"]}, cfg["batch"])
        parents[seed] = parent
        results["parents"].append({"seed": seed, "steps": cfg["parent_steps"], "val_loss": evals[cfg["parent_steps"]],
                                   "last_train_loss": losses[-1]})
        log(f"parent seed {seed}: {cfg['parent_steps']} steps, val loss {evals[cfg['parent_steps']]:.4f}")

    # (1) init-with against random, on the parent's data in the child's tokens
    for seed in cfg["seeds"]:
        parent = parents[seed]
        arms = {"random init": create(replace(hp, vocab_size=bpe_tok.vocab_size), bpe_tok, seed=100 + seed),
                "init-with": init_with(parent, bpe_tok, seed=100 + seed)[0],
                "init-with --keep-shared-tokens": init_with(parent, bpe_tok, seed=100 + seed,
                                                            keep_shared_tokens=True)[0]}
        for name, child in arms.items():
            evals, losses = train(child, c_train, cfg["child_steps"], 100 + seed, c_val, set(cfg["child_evals"]),
                                  cfg["batch"])
            results["init_with"].append({"seed": seed, "arm": name, "val_loss": evals,
                                         "train_loss_first": losses[0], "train_loss_last": losses[-1]})
            log(f"init-with seed {seed} {name}: " + ", ".join(f"{k}:{v:.3f}" for k, v in evals.items()))

    # (2a) the loss right after insertion, every index, every parent
    for seed in cfg["seeds"]:
        parent = parents[seed]
        base = val_loss(parent, p_val)
        for k in range(cfg["L"] + 1):
            for kind in JUMP_INITS:
                after = val_loss(make_variant(parent, k, kind, seed=200 + seed), p_val)
                results["insert_jump"].append({"seed": seed, "index": k, "init": kind, "before": base,
                                               "after": after, "jump": after - base})
        log(f"insert jump seed {seed} done")

    # (2b) training on after the insertion
    parent = parents[cfg["seeds"][0]]
    for k in cfg["after_positions"]:
        for name, kind, reset in ARMS:
            model = clone(parent) if kind is None else make_variant(parent, k, kind, seed=300, reset=reset)
            evals, losses = train(model, p_train, cfg["after_steps"], 300, p_val, set(cfg["after_evals"]), cfg["batch"])
            results["insert_after"].append({"index": k, "arm": name, "val_loss": evals,
                                            "train_loss_first_step": losses[0]})
            log(f"after insert at {k}, {name}: " + ", ".join(f"{s}:{v:.3f}" for s, v in evals.items()))
    results["seconds"] = round(time.time() - t_start, 1)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny, seconds-long run (writes to a temp dir)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where results.json and README.md go")
    ap.add_argument("--readme-only", action="store_true", help="rewrite README.md from the existing results.json")
    args = ap.parse_args(argv)
    out = args.out_dir or (Path(tempfile.mkdtemp(prefix="growth-smoke-")) if args.smoke else HERE)
    out.mkdir(parents=True, exist_ok=True)
    if args.readme_only:
        results = json.loads((out / "results.json").read_text())
    else:
        with engine_threads():  # threads, BLAS and the kernel cache as the CLI has them
            results = experiment(SMOKE if args.smoke else FULL, lambda msg: print(msg, flush=True))
        results = json.loads(json.dumps(results, default=float))  # int keys -> str, numpy -> float
        write_atomically(out / "results.json", json.dumps(results, indent=1) + "\n")
    # the README reads evals by int step: undo the JSON key conversion for it
    for key in ("init_with", "insert_after"):
        for e in results[key]:
            e["val_loss"] = {int(s): v for s, v in e["val_loss"].items()}
    write_atomically(out / "README.md", readme(results, JUMP_INITS, ARMS))
    print(f"wrote {'' if args.readme_only else str(out / 'results.json') + ' and '}{out / 'README.md'} "
          f"({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
