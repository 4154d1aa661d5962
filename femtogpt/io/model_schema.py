"""What a model file may hold, and the checks that both save and load run on it: the top-level keys, the
hyperparameters, the logs, the tensor names and shapes (`tensor_shapes`), float32 arrays without NaN.

A defect is raised as `_Defect` (a message without the file name); femtogpt/io/model_file.py, the one
user of this module, prefixes the file and raises `ModelFileError`. Not here: bytes, the checksum, or
reading and writing files (femtogpt/io/model_file.py).
"""
from __future__ import annotations

import json
import math

import numpy as np

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import internal_layout, reference_names

FORMAT = "femtogpt"
VERSION = 1

_HP_KEYS = ("vocab_size", "num_tokens", "embedding_degree", "num_layers", "num_heads", "head_size", "pos_enc")
_REQUIRED = ("format", "version", "hyperparameters", "tokenizer", "tensors", "checksum")
_OPTIONAL = ("tokenizer_meta", "logs", "train_state", "optimizer")  # absent: {}, [], {}, None
_HEADER = ("format", "version", "hyperparameters", "tokenizer", "tokenizer_meta", "logs", "train_state")
_DTYPES = ("float32", "<f4")                                       # both: IEEE binary32, little-endian


class _Defect(Exception):
    """A problem with a file's contents; the public functions prefix the file name."""


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
    meta, logs, train_state = d.get("tokenizer_meta", {}), d.get("logs", []), d.get("train_state", {})
    for key, value in (("tokenizer_meta", meta), ("train_state", train_state)):
        if not isinstance(value, dict):
            raise _Defect(f"{key} is {_short(value)}, expected a map")
    _check_logs(logs)
    return hp, tokenizer, meta, logs, train_state


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
    try:
        hp = Hyperparameters(**{k: d[k] for k in _HP_KEYS if k != "head_size"}).validate()
    except ValueError as e:
        raise _Defect(f"bad hyperparameters: {e}") from None
    if d["head_size"] != hp.head_size:
        raise _Defect(f"hyperparameter head_size is {d['head_size']}, expected {hp.head_size} "
                      f"(embedding_degree / num_heads)")
    return hp


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
            raise _Defect(f"log {i} ({kind[:40]}) has no id")
        if lid in seen:
            raise _Defect(f"log {i} ({kind[:40]}) repeats the id {lid[:40]} of an earlier log")
        seen.add(lid)


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
    _check_names(entries, shapes, what)
    out = {}
    for name, shape in shapes.items():
        entry = entries[name]
        entries[name] = None  # drop the bytes as soon as the array exists
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data"}:
            raise _Defect(f"{what} {name} is not a {{dtype, shape, data}} map")
        if entry["dtype"] not in _DTYPES:
            raise _Defect(f"{what} {name} has dtype {_short(entry['dtype'])}, expected float32")
        got = entry["shape"]
        if not isinstance(got, list) or any(type(s) is not int for s in got):
            raise _Defect(f"{what} {name} has a bad shape {_short(got)}")
        if tuple(got) != shape:
            raise _Defect(f"{what} {name} has shape {got}, expected {list(shape)}")
        data = entry["data"]
        if not isinstance(data, bytes) or len(data) != 4 * math.prod(shape):
            size = f"{len(data)} bytes" if isinstance(data, bytes) else _short(data)
            raise _Defect(f"{what} {name} has {size} of data, expected {4 * math.prod(shape)} for shape {got}")
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
    shown = ", ".join(_short(n) if not isinstance(n, str) else n[:40] for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
