"""What a model file may hold, and the checks that both save and load run on it: the top-level keys, the
hyperparameters, the tokenizer (its size is vocab_size) and its settings, the resume state, the logs
(each kind's fields: io/logs.py), the tensor names and shapes (`tensor_shapes`), float32 arrays
without NaN.

Nothing is allocated on the word of a file: the hyperparameters must ask for as many tensors as the file
holds (`tensor_count`, Python ints, before a single name is built), and each tensor for exactly the bytes
it has, before any array is made; so a file's model can never be bigger than the file.

A defect is raised as `_Defect` (a message without the file name); femtogpt/io/model_file.py, the one
user of this module, prefixes the file and raises `ModelFileError`. Not here: bytes, the checksum, or
reading and writing files (femtogpt/io/model_file.py).
"""
from __future__ import annotations

import json
import math

import numpy as np

from femtogpt.config import TOKENIZER_KINDS, TRAINING_SETTINGS, Hyperparameters
from femtogpt.engine.params import internal_layout, reference_names
from femtogpt.io.logs import log_problem
from femtogpt.text.printable import printable
from femtogpt.text.rust_calls import TokenizerError

FORMAT = "femtogpt"
VERSION = 1

_HP_KEYS = ("vocab_size", "num_tokens", "embedding_degree", "num_layers", "num_heads", "head_size", "pos_enc")
_REQUIRED = ("format", "version", "hyperparameters", "tokenizer", "tensors", "checksum")
_OPTIONAL = ("tokenizer_meta", "logs", "train_state", "optimizer")  # absent: {}, [], {}, None
_HEADER = ("format", "version", "hyperparameters", "tokenizer", "tokenizer_meta", "logs", "train_state")
_DTYPES = ("float32", "<f4")                                       # both: IEEE binary32, little-endian
_MAX_DEPTH = 32   # levels of maps and lists in the header's free-form values (logs, settings)
_NAME_SLACK = 64  # names are built only when hp asks for at most this many tensors more than the file holds


class _Defect(ValueError):
    """A problem with a file's contents; the public functions prefix the file name."""


def tensor_count(hp):
    """How many tensors hp calls for (Python ints: cheap for any value), without building their names."""
    learned = hp.pos_enc == "learned"  # pos_embedding
    # 5 globals (6 with pos_embedding); per layer 2 norms, H heads of q/k/v, 8 more
    return 5 + learned + hp.num_layers * (3 * hp.num_heads + 10)


def tensor_shapes(hp):
    """{reference name: shape} in file order, computed without allocating the model."""
    layout, E, hs = dict(internal_layout(hp)), hp.embedding_degree, hp.head_size
    return {name: layout.get(name, (E, hs)) for name in reference_names(hp)}  # not in layout: head_{l}_{h}_{k,q,v}


def _check_format(obj):
    if obj.get("format") != FORMAT:
        raise _Defect(f"not a femtogpt model file (format {_short(obj.get('format'))})")
    version = obj.get("version")
    if type(version) is not int or version < 1:
        raise _Defect(f"bad version {_short(version)}, expected an integer >= 1")
    if version > VERSION:
        raise _Defect(f"version {version} is newer than this femtogpt reads ({VERSION}); upgrade femtogpt")


def _check_header(d):
    # the small entries as msgpack gives them back; shared by load, peek and save
    hp = _decode_hp(d.get("hyperparameters"))
    tokenizer = d.get("tokenizer")
    if not isinstance(tokenizer, str):
        raise _Defect(f"tokenizer is {_short(tokenizer)}, expected the tokenizer's JSON text")
    try:
        if not isinstance(json.loads(tokenizer), dict):
            raise _Defect("tokenizer is not a JSON object")
    except ValueError as e:
        raise _Defect(f"tokenizer is not valid JSON ({e})") from None
    except RecursionError:
        raise _Defect("tokenizer is not valid JSON (nested too deeply)") from None
    meta, logs, train_state = d.get("tokenizer_meta", {}), d.get("logs", []), d.get("train_state", {})
    for key, value in (("tokenizer_meta", meta), ("train_state", train_state)):
        if not isinstance(value, dict):
            raise _Defect(f"{key} is {_short(value)}, expected a map")
        _check_depth(value, key)
    _check_depth(logs, "logs")
    _check_fields("tokenizer_meta", meta, _meta_fields(hp))
    _check_fields("train_state", train_state, _TRAIN_STATE)
    _check_settings(train_state.get("settings", {}))
    _check_logs(logs)
    return hp, tokenizer, meta, logs, train_state


def check_tokenizer(tokenizer, meta, hp):
    """The stored tokenizer, rebuilt (a few ms): it must load, and have exactly vocab_size tokens, the
    embedding's rows (infer, eval, compare and export all index one with the other)."""
    from femtogpt.text.tokenizer import TextTokenizer  # the Hugging Face library: only when a file is read

    try:
        return TextTokenizer.from_json(tokenizer, meta, vocab_size=hp.vocab_size)
    except TokenizerError as e:
        raise _Defect(str(e)) from None


def _meta_fields(hp):
    # text/tokenizer.py TextTokenizer.meta(); other keys are kept and ignored
    V = hp.vocab_size
    return {"kind": (lambda v: v in TOKENIZER_KINDS, f"one of {', '.join(TOKENIZER_KINDS)}"),
            "case_insensitive": (lambda v: type(v) is bool, "true or false"),
            "reserve_tokens": (lambda v: type(v) is int and 0 <= v <= V, f"an integer in 0..{V}"),
            "unk_token": (lambda v: type(v) is str, "a string"),
            "vocab_size": (lambda v: type(v) is int and v == V, f"{V} (hyperparameter vocab_size)")}


def _check_depth(value, where):
    # maps and lists inside maps and lists: no file of ours nests past 3 levels, and printing or
    # converting a value nested a thousand levels deep overflows Python's recursion limit
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth >= _MAX_DEPTH:
                raise _Defect(f"{where} is nested too deeply (more than {_MAX_DEPTH} levels)")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


_TRAIN_STATE = {"seed": (lambda v: type(v) is int and 0 <= v < 2**64, "an integer in 0..2**64-1"),
                "settings": (lambda v: isinstance(v, dict) and all(type(k) is str for k in v), "a map"),
                # what an imported fork file held that femtogpt has no place for (io/fork_convert.py)
                "fork": (lambda v: isinstance(v, dict) and all(type(k) is str for k in v), "a map")}


def _check_settings(settings):
    """train_state.settings: each setting this version knows must be valid (config.TRAINING_SETTINGS);
    settings it does not know (from a newer version) are kept and ignored."""
    for name, value in settings.items():
        known = TRAINING_SETTINGS.get(name)
        if known is not None and not known[1](value):
            raise _Defect(f"train_state.settings.{name} is {_short(value)}, expected {known[1].expected}")


def _check_fields(where, d, fields):
    for key, (check, expected) in fields.items():
        if key in d and not check(d[key]):
            raise _Defect(f"{where}.{key} is {_short(d[key])}, expected {expected}")


def _decode_hp(d):
    if not isinstance(d, dict):
        raise _Defect(f"hyperparameters is {_short(d)}, expected a map")
    missing = [k for k in _HP_KEYS if k not in d]
    unknown = [k for k in d if k not in _HP_KEYS]
    if missing or unknown:
        raise _Defect(f"hyperparameters: missing {_names(missing)}" if missing
                      else f"hyperparameters: unknown {_names(unknown)}")
    for k in _HP_KEYS[:-1]:
        if type(d[k]) is not int:
            raise _Defect(f"hyperparameter {k} is {_short(d[k])}, expected an integer")
    if type(d["pos_enc"]) is not str:
        raise _Defect(f"hyperparameter pos_enc is {_short(d['pos_enc'])}, expected a string")
    try:  # head_size is free: num_heads * head_size is the attention width, E unless a head was inserted
        return Hyperparameters(**{k: d[k] for k in _HP_KEYS}).validate()
    except ValueError as e:
        raise _Defect(f"bad hyperparameters: {e}") from None


def _check_logs(logs):
    if not isinstance(logs, list):
        raise _Defect(f"logs is {_short(logs)}, expected a list")
    seen = set()
    for i, log in enumerate(logs):
        if not isinstance(log, dict):
            raise _Defect(f"log {i} is {_short(log)}, expected a map")
        lid, kind = log.get("id"), log.get("kind")
        if not isinstance(kind, str) or not kind:
            raise _Defect(f"log {i} has no kind")
        if not isinstance(lid, str) or not lid:
            raise _Defect(f"log {i} ({printable(kind, 40)}) has no id")
        if lid in seen:
            raise _Defect(f"log {i} ({printable(kind, 40)}) repeats the id {printable(lid, 40)} of an earlier log")
        seen.add(lid)
        problem = log_problem(log)
        if problem:
            raise _Defect(f"log {i} ({printable(kind, 40)}) {problem}")


def check_count(entries, hp, what):
    """Before any name is built: `entries` (name -> tensor) is a map, and hp does not call for far more
    tensors than it holds (num_layers = 10**7 must not build 10**8 names to say that they are missing)."""
    if not isinstance(entries, dict):
        raise _Defect(f"{what}s: {_short(entries)}, expected a map from tensor name to tensor")
    need = tensor_count(hp)
    if need > len(entries) + _NAME_SLACK:
        raise _Defect(f"{what}s do not match the hyperparameters: num_layers {hp.num_layers} and num_heads "
                      f"{hp.num_heads} call for {need:,} {what}s, the file holds {len(entries):,}")


def _check_names(got, shapes, what):
    if not isinstance(got, dict):
        raise _Defect(f"{what}s: {_short(got)}, expected a map from tensor name to tensor")
    missing = [n for n in shapes if n not in got]
    extra = [n for n in got if n not in shapes]
    if missing or extra:
        parts = ([f"missing {_names(missing)}"] if missing else []) + ([f"unexpected {_names(extra)}"] if extra else [])
        raise _Defect(f"{what}s do not match the hyperparameters: {'; '.join(parts)}")


def _check_arrays(arrays, shapes, what, nonnegative=False):
    _check_names(arrays, shapes, what)
    for name, shape in shapes.items():
        a = arrays[name]
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            kind = f"a {a.dtype} array" if isinstance(a, np.ndarray) else f"a {type(a).__name__}"
            raise _Defect(f"{what} {name} is {kind}, expected a float32 array")
        if a.shape != shape:
            raise _Defect(f"{what} {name} has shape {list(a.shape)}, expected {list(shape)}")
        _check_values(a, name, what, nonnegative)


def _check_values(a, name, what, nonnegative):
    if not np.isfinite(a).all():
        raise _Defect(f"{what} {name} contains NaN or infinite values")
    if nonnegative and (a < 0).any():
        raise _Defect(f"{what} {name} has negative values")


def _decode_tensors(entries, shapes, what, nonnegative=False):
    # first every entry's dtype, shape and byte count against hp (nothing allocated), then the arrays
    _check_names(entries, shapes, what)
    for name, shape in shapes.items():
        entry = entries[name]
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data"}:
            raise _Defect(f"{what} {name} is not a {{dtype, shape, data}} map")
        if entry["dtype"] not in _DTYPES:
            raise _Defect(f"{what} {name} has dtype {_short(entry['dtype'])}, expected float32")
        got = entry["shape"]
        if not isinstance(got, list) or any(type(s) is not int for s in got):
            raise _Defect(f"{what} {name} has a bad shape {_short(got)}")
        if tuple(got) != shape:
            raise _Defect(f"{what} {name} has shape {_short(got)}, expected {list(shape)}")
        data = entry["data"]
        if not isinstance(data, bytes) or len(data) != 4 * math.prod(shape):
            size = f"{len(data)} bytes" if isinstance(data, bytes) else _short(data)
            raise _Defect(f"{what} {name} has {size} of data, expected {4 * math.prod(shape)} for shape {got}")
    out = {}
    for name, shape in shapes.items():
        data = entries[name]["data"]
        entries[name] = None  # drop the bytes as soon as the array exists
        a = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(shape)  # a native, writable copy
        _check_values(a, name, what, nonnegative)
        out[name] = a
    return out


def _unique_map(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Defect(f"corrupt: the key {_short(dup)} appears twice in one map")
    return d


def _unstorable(value, where="header"):
    """Where in `value` something msgpack cannot store, or that would not load back; None if nothing."""
    if value is None or isinstance(value, (bool, float, bytes)):
        return None
    if isinstance(value, int):
        return None if -2**63 <= value < 2**64 else f"{where}: the integer {value} does not fit in 64 bits"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where}: a string that is not valid UTF-8"
        return None
    if isinstance(value, (list, tuple)):
        return next(filter(None, (_unstorable(v, f"{where}[{i}]") for i, v in enumerate(value))), None)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where}: the key {_short(k)} is not a string"
            problem = _unstorable(v, f"{where}.{k}" if where != "header" else k)
            if problem:
                return problem
        return None
    return f"{where}: a {type(value).__name__} cannot be stored (use int, float, str, bool, None, bytes, list, dict)"


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _names(names, limit=4):
    shown = ", ".join(_short(n) if not isinstance(n, str) else printable(n, 40) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
