"""Both directions between the Rust fork's model files (.dat, bincode) and femtogpt's Checkpoint.

Fork -> femtogpt (`checkpoint_from_fork`): tensors, optimizer moments, tokenizer (ids kept) and logs
(ids kept, so lineage between imported models still works). What the fork file holds and femtogpt
has no place for is kept too: a TrainStep's is_gpu (a log field, only when true), and in
train_state["fork"] a Byte tokenizer unit and an optimizer step stored without moments.

Log fields are renamed to ours (TrainStep avg_loss/elapsed -> loss/elapsed_ms, plus the optimizer
step it ended and the reference schedule's lr at it). The fork's tokenizer becomes a Hugging Face
Unigram over the same strings: for character vocabularies (every fixture) it encodes exactly as the
fork; for the fork's "BPE" vocabularies it picks the fewest tokens where the fork matched greedily.

Before anything is allocated the hyperparameters are held to the file, as for our own files: as many
tensors as they call for (Python ints, before a name is built), each of the shape they call for, as many
tokens as vocab_size, and a model that fits in memory; any defect is one ForkFileError line.

femtogpt -> fork (`fork_model_from_checkpoint`, then io/fork_writer.py): the same fields back, bitwise.
What the fork cannot represent is refused with one ForkExportError line (pos_enc other than none or
absolute, a hyperparameter it has no field for, a byte-level or merges-replaying tokenizer, a tensor it
does not have); what it merely has no place for is dropped and named in the notes returned (femtogpt's
own log kinds, log fields and the training settings). A fork -> femtogpt -> fork round trip gives the
fork file back with its hash maps in our order (token ids ascending, tensors in reference order).
"""
import dataclasses
import json
import re

import numpy as np

from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.engine.params import Parameters, named_views, reference_names
from femtogpt.io.checkpoint import assemble, build_bytes
from femtogpt.io.fork_reader import _HYPERPARAMETERS, _POS_ENCS, _UNITS, ForkFileError, ForkModel, read_fork_model
from femtogpt.io.logs import (INIT, INIT_WITH, INSERT_LAYER, RESET_OPTIMIZER, TRAIN_SESSION, TRAIN_STEP,
                              TRAIN_STEPS, block_steps)
from femtogpt.io.model_schema import check_count, tensor_shapes
from femtogpt.model.memory import ModelTooLarge, check_fits, model_bytes
from femtogpt.text.tokenizer_files import from_fork_tokens


_FORK_HASH = re.compile(r"[0-9a-f]{20}")   # the fork's file_hash: 80 bits as {:020x}, reference §3.4
FORK_LEFTOVERS = "fork"    # the train_state key of what an imported fork file held and femtogpt does not


def convert_logs(fork_logs, schedule=OptimizerConfig()):
    """Fork logs with our field names; the optimizer step restarts where the fork reset it."""
    logs, step = [], 0
    for log in fork_logs:
        kind, new = log["kind"], {"id": log["id"], "kind": log["kind"]}
        if kind == INIT:
            new["hyperparameters"] = dict(log["hyperparameters"])
        elif kind == TRAIN_SESSION:
            new.update(dataset=log["file"], dataset_hash=log["file_hash"], dropout=log["dropout"])
            if _FORK_HASH.fullmatch(log["file_hash"]):
                new["hash_kind"] = "fork"                  # else femtogpt's own, from a file `convert` wrote
        elif kind == TRAIN_STEP:
            new.update(step=step + 1, loss=log["avg_loss"], elapsed_ms=log["elapsed"],
                       lr=schedule.learning_rate(step))
            if log["is_gpu"]:
                new["is_gpu"] = True                       # absent: false, as every CPU-build step
            step += 1
        elif kind == INSERT_LAYER:
            new["index"] = log["index"]
        elif kind == RESET_OPTIMIZER:
            step = 0
        logs.append(new)
    return logs


def checked_hyperparameters(fork, name):
    """The fork model's Hyperparameters, held to its own tensors and tokens (see the module docstring)."""
    h = fork.hyperparameters
    try:
        hp = Hyperparameters(vocab_size=h["vocab_size"], num_tokens=h["num_tokens"],
                             embedding_degree=h["embedding_degree"], num_layers=h["num_layers"],
                             num_heads=h["num_heads"], head_size=h["head_size"], pos_enc=fork.pos_enc).validate()
        check_count(fork.tensors, hp, "tensor")       # before a name is built
        _check_shapes(fork.tensors, tensor_shapes(hp), "tensor")
        if fork.optimizer_state:
            _check_shapes(fork.optimizer_state, {f"{n}_{key}": s for n, s in tensor_shapes(hp).items()
                                                 for key in ("m", "v")}, "optimizer state")
        if len(fork.tokens) != hp.vocab_size:
            raise ValueError(f"the tokenizer has {len(fork.tokens)} tokens but vocab_size is {hp.vocab_size}")
        check_fits(build_bytes(hp, bool(fork.optimizer_state)))
    except ValueError as e:            # a bad value, a schema defect, ModelTooLarge: all one line
        raise ForkFileError(f"{name}: {e}") from None
    return hp


def _check_shapes(arrays, shapes, what):
    missing = [n for n in shapes if n not in arrays]
    if missing:
        raise ValueError(f"the {what} has no {missing[0]}" + (f" (and {len(missing) - 1} more missing)"
                                                              if len(missing) > 1 else ""))
    for n, shape in shapes.items():
        if arrays[n].shape != shape:
            raise ValueError(f"{what} {n} has shape {list(arrays[n].shape)}, expected {list(shape)}")


def checkpoint_from_fork(path):
    """Read a fork .dat file (ForkFileError on any defect) and build the equivalent Checkpoint."""
    return checkpoint_from_fork_model(read_fork_model(path), str(path))


def checkpoint_from_fork_model(fork, name):
    """The Checkpoint of a ForkModel read from the file `name` (ForkFileError when it does not hold up)."""
    hp = checked_hyperparameters(fork, name)
    tokenizer = from_fork_tokens(fork.tokens, fork.unk_id, fork.case_sensitive, name=name)
    params = Parameters(hp).load(fork.tensors)
    optimizer = None
    if fork.optimizer_state:
        optimizer = {"step": fork.optimizer_step,
                     **{key: {name: fork.optimizer_state[name + "_" + key] for name in reference_names(hp)}
                        for key in ("m", "v")}}
    train_state = {"seed": 0}
    leftovers = {}                                   # what the fork file holds that femtogpt has no place for
    if fork.tokenizer_unit != "char":
        leftovers["unit"] = fork.tokenizer_unit
    if not fork.optimizer_state and fork.optimizer_step:
        # a step without moments (never written by the fork itself): kept while the logs end as now
        leftovers.update(optimizer_step=fork.optimizer_step, at_log=fork.logs[-1]["id"] if fork.logs else "")
    if leftovers:
        train_state[FORK_LEFTOVERS] = leftovers
    return assemble(hp, params, tokenizer, convert_logs(fork.logs), train_state, optimizer)


def model_file_or_fork(path):
    """A femtogpt ModelFile from `path`: a femtogpt model file, or else the Rust fork's .dat file read
    as `convert --to femtogpt` would. Raises ModelFileError for a femtogpt file that is damaged (or a file of
    neither kind), and ForkFileError or TokenizerError for a fork file that does not hold up."""
    from pathlib import Path

    from femtogpt.io.model_file import ModelFileError, load_model_file

    try:
        return load_model_file(Path(path))
    except ModelFileError as ours:
        if not ours.foreign:
            raise                 # a femtogpt model file, damaged or invalid: say what is wrong with it
        try:
            fork = read_fork_model(path)
        except ForkFileError:
            raise ours from None  # neither kind: report it as a femtogpt file
        return checkpoint_from_fork_model(fork, str(path)).to_model_file()


# ---------------------------------------------------------------- femtogpt -> fork

class ForkExportError(ValueError):
    """A femtogpt model the fork's file cannot represent; str() is one line naming the model and what."""


_FORK_HP_FIELDS = ("vocab_size", "num_tokens", "embedding_degree", "num_layers", "num_heads", "head_size", "pos_enc")


def fork_tensor_shapes(h):
    """{name: shape} of a fork model with hyperparameters `h` (the fork's six), reference §2.1."""
    V, E, L, H, hs = (h[k] for k in ("vocab_size", "embedding_degree", "num_layers", "num_heads", "head_size"))
    shapes = {"token_embedding": (V, E)}
    for l in range(L):
        shapes.update({f"norm_{l}_coeff": (E,), f"norm_{l}_bias": (E,)})
        shapes.update({f"head_{l}_{h}_{x}": (E, hs) for h in range(H) for x in "kqv"})
        shapes.update({f"proj_{l}_weights": (H * hs, E), f"proj_{l}_bias": (E,), f"atten_norm_{l}_coeff": (E,),
                       f"atten_norm_{l}_bias": (E,), f"feedforward1_{l}_weights": (E, 4 * E),
                       f"feedforward1_{l}_bias": (4 * E,), f"feedforward2_{l}_weights": (4 * E, E),
                       f"feedforward2_{l}_bias": (E,)})
    shapes.update({"head_norm_coeff": (E,), "head_norm_bias": (E,), "head_map_weights": (E, V), "head_map_bias": (V,)})
    return shapes


def _fork_hyperparameters(hp, name):
    if hp.pos_enc not in _POS_ENCS:
        raise ForkExportError(f"{name}: pos_enc {hp.pos_enc!r} has no place in a fork file (the fork knows only "
                              f"{' and '.join(_POS_ENCS)})")
    for f in dataclasses.fields(hp):                  # a hyperparameter the fork has no field for, if it is set
        if f.name not in _FORK_HP_FIELDS and getattr(hp, f.name) != f.default:
            raise ForkExportError(f"{name}: hyperparameter {f.name} = {getattr(hp, f.name)!r} has no place in "
                                  "a fork file")
    return {k: int(getattr(hp, k)) for k in _HYPERPARAMETERS}


def _fork_tokenizer(tok, name):
    """(case_sensitive, unk id, {id: bytes} in id order, notes) of a tokenizer the fork can hold: a list of
    strings with an <unk> (ascii, char, a token list, an imported fork tokenizer), at most lowercased."""
    spec = json.loads(tok.to_json())
    model = spec["model"]
    why = None
    if tok.byte_level or spec.get("pre_tokenizer") is not None:
        why = "it is byte-level (kind byte, or a byte-level BPE)" if tok.byte_level else "it has a pre-tokenizer"
    elif model["type"] not in ("BPE", "Unigram") or model.get("merges"):
        why = f"it is a {model['type']} with merges" if model.get("merges") else f"it is a {model['type']} model"
    elif tok.unk_id is None:
        why = "it has no <unk> token"
    elif spec.get("normalizer") not in (None, {"type": "Lowercase"}):
        why = f"its normalizer ({spec['normalizer'].get('type')}) is not a plain lowercase"
    if why:
        raise ForkExportError(f"{name}: the tokenizer ({tok.summary()}) cannot be a fork tokenizer: {why}; the "
                              "fork's is a list of strings matched greedily, with an <unk> (femtogpt's ascii, "
                              "char and token-list tokenizers)")
    tokens = {}
    for i in range(tok.vocab_size):
        s = tok.hf.id_to_token(i)
        if not s:
            raise ForkExportError(f"{name}: the tokenizer has no token {i}" if s is None
                                  else f"{name}: token {i} is empty, which the fork cannot hold")
        tokens[i] = s.encode("utf-8")
    if len(set(tokens.values())) != len(tokens):
        raise ForkExportError(f"{name}: the tokenizer has two tokens with the same text, which the fork cannot hold")
    notes = []
    special = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
    if special:
        notes.append(f"{len(special)} special tokens ({', '.join(special[:3])}{', ...' if len(special) > 3 else ''}) "
                     "become ordinary fork tokens, which the fork matches in text")
    return not tok.case_insensitive, tok.unk_id, tokens, notes


def _fork_log(log):
    """(the fork's form of one of our logs, or None; the fields it carries over)."""
    kind, lid = log.get("kind"), log.get("id")
    if kind in (INIT, INIT_WITH) and isinstance(log.get("hyperparameters"), dict):
        h = dict(log["hyperparameters"])
        if "head_size" not in h and type(h.get("num_heads")) is int and h["num_heads"] > 0:
            h["head_size"] = h.get("embedding_degree", 0) // h["num_heads"]
        if all(type(h.get(k)) is int and h[k] >= 0 for k in _HYPERPARAMETERS):
            new = {"kind": INIT, "id": lid, "hyperparameters": {k: h[k] for k in _HYPERPARAMETERS}}
            return new, ["hyperparameters"]
    elif kind == TRAIN_SESSION:
        return ({"kind": kind, "id": lid, "dropout": float(log.get("dropout", 0.0)),
                 "file": str(log.get("dataset", "")), "file_hash": str(log.get("dataset_hash", ""))},
                ["dropout", "dataset", "dataset_hash"] + (["hash_kind"] if log.get("hash_kind") == "fork" else []))
    elif kind == TRAIN_STEP:
        return ({"kind": kind, "id": lid, "avg_loss": float(log["loss"]), "elapsed": int(log.get("elapsed_ms", 0)),
                 "is_gpu": bool(log.get("is_gpu", False))}, ["loss", "elapsed_ms", "is_gpu", "step", "lr"])
    elif kind == INSERT_LAYER:
        return {"kind": kind, "id": lid, "index": int(log["index"])}, ["index"]
    elif kind == RESET_OPTIMIZER:
        return {"kind": kind, "id": lid}, []
    return None, []


def fork_logs(logs):
    """(the logs as the fork's, notes on what was dropped). TrainSteps blocks become one TrainStep per
    step with the id "<block id>/<index>" (as femtogpt's own readers show them, so lineage holds);
    InitWith becomes Init (as the fork's init-with writes); femtogpt's other kinds are dropped. A
    TrainStep's step and lr are not noted: an import derives them again (lr by the reference schedule)."""
    out, dropped_kinds, dropped_fields, as_init = [], {}, set(), 0
    for log in logs:
        kind = log.get("kind")
        if kind == TRAIN_STEPS:
            _, losses, elapsed = block_steps(log)
            out.extend({"kind": TRAIN_STEP, "id": f"{log['id']}/{i}", "avg_loss": float(x), "elapsed": int(ms),
                        "is_gpu": False} for i, (x, ms) in enumerate(zip(losses, elapsed)))
            continue
        new, kept = _fork_log(log)
        if new is None:
            dropped_kinds[str(kind)] = dropped_kinds.get(str(kind), 0) + 1
            continue
        out.append(new)
        dropped_fields.update(f"{kind}.{k}" for k in log if k not in ("id", "kind", *kept))
        if kind in (INIT, INIT_WITH):
            dropped_fields.update(f"{kind}.hyperparameters.{k}" for k in log["hyperparameters"]
                                  if k not in _HYPERPARAMETERS)
        as_init += kind == INIT_WITH
    notes = [f"{as_init} InitWith log(s) written as the fork's Init, as its init-with writes"] if as_init else []
    if dropped_kinds:
        notes.append("logs the fork has no kind for, dropped: "
                     + ", ".join(f"{n} {k}" for k, n in dropped_kinds.items()))
    if dropped_fields:
        notes.append("log fields the fork has no place for, dropped: " + ", ".join(sorted(dropped_fields)))
    return out, notes


def fork_model_from_checkpoint(ckpt, name="the model"):
    """(ForkModel, notes): the fork's model file for a Checkpoint, every tensor and moment bitwise, and
    one-line notes on what the fork has no place for (dropped). Raises ForkExportError (one line) when
    the fork cannot represent the model; the ForkModel is checked to read back as a fork file would."""
    hp = ckpt.hp
    fork_hp = _fork_hyperparameters(hp, name)
    try:
        check_fits(2 * model_bytes(hp, optimizer=ckpt.optimizer is not None), "converting it")  # copies, bytes
    except ModelTooLarge as e:
        raise ForkExportError(f"{name}: {e}") from None
    case_sensitive, unk_id, tokens, notes = _fork_tokenizer(ckpt.tokenizer, name)
    named = ckpt.model.params.named()
    shapes = fork_tensor_shapes(fork_hp)
    extra = [n for n in named if n not in shapes]
    if extra or set(shapes) - set(named):
        what = f"tensor {extra[0]}" if extra else f"no tensor {sorted(set(shapes) - set(named))[0]}"
        raise ForkExportError(f"{name}: the model has {what}, unlike a fork model of its hyperparameters")
    order = [n for n in reference_names(hp) if n in shapes] + [n for n in shapes if n not in reference_names(hp)]
    tensors = {n: np.array(named[n], dtype=np.float32, order="C") for n in order}   # copies
    for n, a in tensors.items():
        if a.shape != shapes[n]:
            raise ForkExportError(f"{name}: tensor {n} has shape {list(a.shape)}, the fork's is {list(shapes[n])}")
    leftovers = ckpt.train_state.get(FORK_LEFTOVERS) or {}     # a map (io/model_schema.py); values checked here
    unit = leftovers.get("unit") if leftovers.get("unit") in _UNITS else "char"
    optimizer_state, step = {}, 0
    if ckpt.optimizer is not None:
        step = int(ckpt.optimizer.step)
        m, v = named_views(hp, ckpt.optimizer.m), named_views(hp, ckpt.optimizer.v)
        for n in order:
            optimizer_state[n + "_m"] = np.array(m[n], dtype=np.float32, order="C")
            optimizer_state[n + "_v"] = np.array(v[n], dtype=np.float32, order="C")
    elif (type(leftovers.get("optimizer_step")) is int and 0 <= leftovers["optimizer_step"] < 2**64
          and leftovers.get("at_log") == (ckpt.logs[-1].get("id") if ckpt.logs else "")):
        step = leftovers["optimizer_step"]            # stored by an import, and no log has come since
    logs, log_notes = fork_logs(ckpt.logs)
    settings = sorted((ckpt.train_state.get("settings") or {}))
    other = sorted(k for k in ckpt.train_state if k not in ("settings", FORK_LEFTOVERS, "seed"))
    kept = ([f"the training settings ({', '.join(settings)})"] if settings else []) + \
        (["the training seed"] if ckpt.train_state.get("seed") else []) + [f"train_state.{k}" for k in other]
    notes += log_notes + ([f"settings the fork has no place for, dropped: {'; '.join(kept)}"] if kept else [])
    fork = ForkModel(tokenizer_unit=unit, case_sensitive=case_sensitive, unk_id=unk_id,
                     tokens=tokens, pos_enc=hp.pos_enc, hyperparameters=fork_hp, tensors=tensors,
                     optimizer_step=step, optimizer_state=optimizer_state, logs=logs)
    try:
        checked_hyperparameters(fork, name)         # it reads back as a fork file would
    except ForkFileError as e:
        raise ForkExportError(str(e)) from None
    return fork, notes
