"""Crafted model files for the hostile-input tests: a small valid model with a log of every kind, its
entries as plain msgpack values, and a writer that re-checksums edited entries, so a test reaches the
checks past the CRC. Also: running a command in a subprocess under a 1 GB address-space limit."""
import json
import os
import resource
import subprocess
import sys
import zlib
from pathlib import Path

import msgpack

from femtogpt.config import Hyperparameters
from femtogpt.io import logs as L
from femtogpt.io.checkpoint import create
from femtogpt.text.build import build_tokenizer

REPO = Path(__file__).resolve().parents[1]
GB = 1 << 30
CATASTROPHIC_REGEX = "(a+)+b(?<=c)"  # on "aaaa...a" Oniguruma gives up (retry limit) and the onig crate panics


def small_model(path, optimizer=True):
    """A valid model file (ascii tokenizer, V 101, T 8, E 8, L 2, H 2) whose logs hold every kind, and
    one kind this version does not know."""
    tok = build_tokenizer("ascii")
    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=8, embedding_degree=8, num_layers=2, num_heads=2)
    ckpt = create(hp, tok, seed=5)
    if optimizer:
        ckpt.ensure_optimizer().step = 3
    ckpt.logs += [
        L.new_log(L.TRAIN_SESSION, dropout=0.0, seed=5, batch_size=2, start_step=0, dataset="d.txt",
                  dataset_hash="ab" * 8),
        L.new_log(L.TRAIN_STEP, step=1, loss=4.5, elapsed_ms=12, lr=1e-5),
        L.new_log(L.TRAIN_STEP, step=2, loss=4.25, elapsed_ms=11, lr=2e-5),
        L.new_log(L.EVAL, step=2, val_loss=4.0),
        L.new_log(L.INSERT_LAYER, index=1, init="near-identity", seed=3, optimizer="kept"),
        L.new_log(L.RESET_OPTIMIZER),
        L.new_log(L.INIT_WITH, parent="p.dat", parent_last_log_id=None, hyperparameters=hp.to_dict(), seed=1,
                  tokenizer=tok.summary(), copied=10, fresh=["token_embedding"]),
        L.new_log("FromTheFuture", note="a kind a newer femtogpt may write"),
    ]
    ckpt.save(path)
    return path


def entries(path):
    """The model file's top-level map, the checksum entry removed."""
    e = msgpack.unpackb(Path(path).read_bytes(), strict_map_key=False)
    e.pop("checksum", None)
    return e


def write_entries(path, e):
    """Write a map as our writer does: every entry, then the checksum over every byte before it."""
    packer = msgpack.Packer()
    body = packer.pack_map_header(len(e) + 1) + b"".join(packer.pack(k) + packer.pack(v) for k, v in e.items())
    Path(path).write_bytes(body + packer.pack("checksum") + packer.pack(f"{zlib.crc32(body):08x}"))
    return path


def crafted(path, base, change):
    """`base`'s entries changed in place by `change(entries)`, written re-checksummed to `path`."""
    e = entries(base)
    change(e)
    return write_entries(path, e)


def set_hp(**values):
    return lambda e: e["hyperparameters"].update(values)


def with_regex(pattern):
    """A change that gives the stored tokenizer a Split pre-tokenizer with `pattern`."""
    def change(e):
        spec = json.loads(e["tokenizer"])
        spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
                                 "invert": False}
        e["tokenizer"] = json.dumps(spec)
    return change


def limit_memory(nbytes=GB):
    resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))


def run_limited(args, cwd, timeout=300, python=False):
    """`femtogpt ARGS` (or `python ARGS`) in a subprocess whose address space is capped at 1 GB."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUST_BACKTRACE": "1"}  # a panic would print a backtrace
    cmd = [sys.executable, *args] if python else [sys.executable, "-m", "femtogpt", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit_memory)
