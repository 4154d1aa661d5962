"""The msgpack model file: schema, version, atomic save, validated load.

Here: `ModelFile` (everything a file holds), `save_model_file` (validates, then writes atomically: a temp
file in the same directory, fsync, rename, fsync of the directory), `load_model_file` (checks every byte;
any defect is one `ModelFileError` line naming the file), `peek_header` (the small entries, without the
tensors), the log helpers, `named_flat_views` (AdamW's flat moments by reference name) and
`encode_rng_state`/`decode_rng_state` (numpy RNG state for an exact resume). Not here: building
Parameters/AdamW from a file, or checking the tokenizer JSON against vocab_size (the tokenizer's job).

Integrity: the file is one msgpack map whose LAST entry is `"checksum": <8 lowercase hex digits>`, the
CRC-32 (zlib/IEEE, as in gzip and PNG) of every byte before that entry, so the file always ends with the
18 bytes b"\\xa8checksum\\xa8" + 8 hex digits. CRC-32 detects every error burst of up to 32 bits, hence
every single-bit flip in the covered bytes; a flip inside the trailer breaks its fixed 10-byte prefix or
turns a digit into another byte (another digit, an uppercase letter, a non-digit), and the digest is
compared exactly. A truncated file loses its trailer. The loader checks this before it trusts any other
byte, and the rule holds for every version, so a reader verifies integrity before it reads the version.
"""
from __future__ import annotations

import errno
import json
import math
import os
import secrets
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import internal_layout, reference_names, reference_views

FORMAT = "femtogpt"
VERSION = 1


_HP_KEYS = ("vocab_size", "num_tokens", "embedding_degree", "num_layers", "num_heads", "head_size", "pos_enc")
_REQUIRED = ("format", "version", "hyperparameters", "tokenizer", "tensors", "checksum")
_OPTIONAL = ("tokenizer_meta", "logs", "train_state", "optimizer")  # absent: {}, [], {}, None
_HEADER = ("format", "version", "hyperparameters", "tokenizer", "tokenizer_meta", "logs", "train_state")
_DTYPES = ("float32", "<f4")                                       # both: IEEE binary32, little-endian
_MAGIC = msgpack.packb("format") + msgpack.packb(FORMAT)            # our files: a fixmap header, then this
_TRAILER_PREFIX = msgpack.packb("checksum") + b"\xa8"               # key, then a fixstr of 8 hex digits
_TRAILER_LEN = len(_TRAILER_PREFIX) + 8


class ModelFileError(ValueError):
    """A model file that cannot be read or written; str() is one line naming the file and the defect."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).splitlines()))


class _Defect(Exception):
    """A problem with a file's contents; the public functions prefix the file name."""


@dataclass(eq=False)
class ModelFile:
    hp: Hyperparameters
    tokenizer: str                     # the Hugging Face tokenizer JSON, exactly as Tokenizer.to_str() gives it
    tensors: dict                      # reference name -> float32 array; loaded: writable C-contiguous copies
    tokenizer_meta: dict = field(default_factory=dict)   # our tokenizer settings (str keys)
    optimizer: dict | None = None      # {"step": int, "m": {name: arr}, "v": {name: arr}}; None: none stored
    logs: list = field(default_factory=list)             # [{"id", "kind", **fields}], oldest first
    train_state: dict = field(default_factory=dict)      # what an exact resume needs: seed, RNG, data cursor


def tensor_shapes(hp):
    """{reference name: shape} in file order, computed without allocating the model."""
    layout, E, hs = dict(internal_layout(hp)), hp.embedding_degree, hp.head_size
    return {name: layout.get(name, (E, hs)) for name in reference_names(hp)}  # not in layout: head_{l}_{h}_{k,q,v}


def named_flat_views(hp, flat):
    """{reference name: view} into a flat array laid out like Parameters.data (e.g. AdamW.m, AdamW.v)."""
    views, offset = {}, 0
    for name, shape in internal_layout(hp):
        n = math.prod(shape)
        views[name] = flat[offset:offset + n].reshape(shape)
        offset += n
    if offset != flat.size:
        raise ValueError(f"flat array has {flat.size} elements, the model has {offset}")
    return reference_views(hp, views)


def encode_rng_state(state):
    """A numpy `bit_generator.state` in msgpack-safe values: ints beyond 64 bits -> {"int": hex},
    arrays -> {"array": [...], "dtype": str}. `decode_rng_state` inverts it."""
    if isinstance(state, dict):
        return {k: encode_rng_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {"array": state.tolist(), "dtype": state.dtype.str}
    if isinstance(state, (int, np.integer)) and not isinstance(state, bool):
        value = int(state)
        return value if -2**63 <= value < 2**64 else {"int": hex(value)}
    return state


def decode_rng_state(state):
    if isinstance(state, dict):
        if set(state) == {"int"}:
            return int(state["int"], 16)
        if set(state) == {"array", "dtype"}:
            return np.array(state["array"], dtype=state["dtype"])
        return {k: decode_rng_state(v) for k, v in state.items()}
    return state


# ---------------------------------------------------------------- save

def save_model_file(path, mf: ModelFile):
    """Validate `mf`, then replace `path` atomically. Raises ModelFileError (one line) and leaves any
    existing file untouched when `mf` has a defect (NaN weights included) or the write fails."""
    path = Path(path)
    try:
        header, shapes = _prepare(mf)
    except _Defect as e:
        raise ModelFileError(f"{path}: cannot save: {e}") from None
    n_entries = len(_HEADER) + 1 + (mf.optimizer is not None) + 1  # header, tensors, optimizer, checksum
    write_atomically(path, _with_checksum(_chunks(header, n_entries, shapes, mf)))


def _with_checksum(chunks):
    # the chunks, then the trailer entry holding the CRC-32 of every byte before it
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        yield chunk
    yield _TRAILER_PREFIX + f"{crc:08x}".encode()


def _prepare(mf):
    # everything is checked before a byte is written; the small entries go through a pack/unpack round trip
    # and the loader's own checks, so a file we write always loads
    if not isinstance(mf.hp, Hyperparameters):
        raise _Defect(f"hp is a {type(mf.hp).__name__}, expected Hyperparameters")
    try:
        mf.hp.validate()
    except ValueError as e:
        raise _Defect(f"bad hyperparameters: {e}") from None
    shapes = tensor_shapes(mf.hp)
    _check_arrays(mf.tensors, shapes, "tensor")
    opt = mf.optimizer
    if opt is not None:
        if not isinstance(opt, dict) or set(opt) != {"step", "m", "v"}:
            raise _Defect("optimizer must be None or {'step', 'm', 'v'}")
        step = opt["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise _Defect(f"optimizer step is {_short(step)}, expected an integer >= 0")
        _check_arrays(opt["m"], shapes, "optimizer m tensor")
        _check_arrays(opt["v"], shapes, "optimizer v tensor", nonnegative=True)
    header = {"format": FORMAT, "version": VERSION, "hyperparameters": mf.hp.to_dict(), "tokenizer": mf.tokenizer,
              "tokenizer_meta": mf.tokenizer_meta, "logs": mf.logs, "train_state": mf.train_state}
    try:
        blob = msgpack.packb(header)
        _check_header(msgpack.unpackb(blob, strict_map_key=True, object_pairs_hook=_unique_map))
    except _Defect:
        raise
    except Exception as e:
        raise _Defect(_unstorable(header) or f"cannot encode the header ({e})") from None
    return blob, shapes


def _chunks(blob, n_entries, shapes, mf):
    # the map header counts every entry; blob is the header map packed alone (a 1-byte fixmap header)
    yield bytes([0x80 | n_entries]) + blob[1:]
    yield msgpack.packb("tensors")
    yield from _tensor_map(mf.tensors, shapes)
    if mf.optimizer is not None:
        packer = msgpack.Packer()
        yield packer.pack("optimizer") + packer.pack_map_header(3) + packer.pack("step") + packer.pack(
            int(mf.optimizer["step"]))
        yield msgpack.packb("m")
        yield from _tensor_map(mf.optimizer["m"], shapes)
        yield msgpack.packb("v")
        yield from _tensor_map(mf.optimizer["v"], shapes)


def _tensor_map(arrays, shapes):
    yield msgpack.Packer().pack_map_header(len(shapes))
    for name in shapes:
        a = np.ascontiguousarray(arrays[name], dtype="<f4").reshape(-1)  # explicit little-endian
        yield msgpack.packb(name)
        yield msgpack.packb({"dtype": "float32", "shape": list(shapes[name]), "data": memoryview(a)})


def write_atomically(path, chunks):
    """Write the byte chunks to a temp file beside `path`, fsync, rename over `path`: readers see the
    old file or the new one, never a part. Raises ModelFileError (one line); the old file stays."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: cannot save: it is a directory")
    target = Path(os.path.realpath(path)) if path.is_symlink() else path  # replace the file, keep the link
    directory = target.parent
    existed = target.exists()
    tmp = directory / f".{target.name}.{secrets.token_hex(4)}.tmp"
    created = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)  # umask applies
        created = True
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            if existed:
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(target).st_mode))  # keep the old file's permissions
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:  # Ctrl-C included: never leave a temp file behind when we can help it
        if created:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if not isinstance(e, Exception):
            raise
        reason = _write_reason(e, directory) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        kept = f"the existing {path.name} is unchanged" if existed else "nothing was written"
        raise ModelFileError(f"{path}: cannot save: {reason}; {kept}") from None
    try:  # make the rename itself durable; some file systems refuse fsync on a directory, the file is in place
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _write_reason(e, directory):
    where = f"directory {str(directory)!r}"
    return {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large for this file system or process limit",
            errno.EROFS: f"read-only file system ({where})", errno.EACCES: f"permission denied ({where})",
            errno.EPERM: f"operation not permitted ({where})", errno.ENOENT: f"{where} does not exist",
            errno.ENOTDIR: f"{where} is not a directory"}.get(e.errno, e.strerror or str(e))


# ---------------------------------------------------------------- load

def load_model_file(path) -> ModelFile:
    """Read, verify and validate a model file; every defect is a one-line ModelFileError naming the file."""
    path = Path(path)
    data = _read(path)
    try:
        obj = _verified_map(data)
        data = None  # free the file's bytes before the arrays are built
        return _from_map(obj)
    except _Defect as e:
        raise ModelFileError(f"{path}: {e}") from None
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to load it") from None
    except Exception as e:  # a bug or a case not foreseen: still one line, never a traceback
        raise ModelFileError(f"{path}: unreadable model file ({type(e).__name__}: {e})") from None


def peek_header(path) -> dict:
    """{"version", "hyperparameters" (a Hyperparameters), "tokenizer", "tokenizer_meta", "logs",
    "train_state"} without reading the tensors. Cheap, but NOT checked against the checksum: use
    load_model_file before trusting a file."""
    path = Path(path)
    _regular_file(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise _Defect("empty file (0 bytes), not a femtogpt model file")
            u = msgpack.Unpacker(f, strict_map_key=True, max_buffer_size=size, object_pairs_hook=_unique_map)
            try:
                n = u.read_map_header()
            except Exception:
                raise _Defect("not a femtogpt model file") from None
            found = {}
            for _ in range(n):
                key = u.unpack()
                if key in ("tensors", "optimizer", "checksum"):
                    u.skip()
                else:
                    found[key] = u.unpack()
                if all(k in found for k in _HEADER):
                    break  # our writer puts these first
        _check_format(found)
        hp, tokenizer, meta, logs, train_state = _check_header(found)
        return {"version": found["version"], "hyperparameters": hp, "tokenizer": tokenizer,
                "tokenizer_meta": meta, "logs": logs, "train_state": train_state}
    except _Defect as e:
        raise ModelFileError(f"{path}: {e}") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except msgpack.OutOfData:
        raise ModelFileError(f"{path}: truncated or corrupt (the file ends early)") from None
    except Exception as e:
        raise ModelFileError(f"{path}: truncated or corrupt ({type(e).__name__}: {e})") from None


def _regular_file(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{path}: is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path}: not a regular file")


def _read(path):
    _regular_file(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:
        raise ModelFileError(f"{path}: cannot read: permission denied") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror or e}") from None


def _verified_map(data):
    if not data:
        raise _Defect("empty file (0 bytes), not a femtogpt model file")
    has_trailer = len(data) >= _TRAILER_LEN and data[-_TRAILER_LEN:-8] == _TRAILER_PREFIX
    our_start = 0x80 <= data[0] <= 0x8F and _MAGIC.startswith(data[1:1 + len(_MAGIC)])  # even cut inside it
    if not has_trailer and not our_start:
        raise _Defect(_not_ours(data))
    if not has_trailer:
        raise _Defect(f"truncated or corrupt (no checksum at the end of its {len(data)} bytes)" + _newer(data))
    if f"{zlib.crc32(memoryview(data)[:-_TRAILER_LEN]):08x}".encode() != data[-8:]:
        raise _Defect("truncated or corrupt (checksum mismatch)" + _newer(data))
    try:
        obj = msgpack.unpackb(data, strict_map_key=True, object_pairs_hook=_unique_map)
    except _Defect:
        raise
    except Exception as e:
        raise _Defect(f"corrupt: not valid msgpack ({e})") from None
    if not isinstance(obj, dict):
        raise _Defect("not a femtogpt model file (not a msgpack map)")
    return obj


def _newer(data):
    # a file that fails its checksum but claims a newer version was likely edited or written by another
    # tool: say both, without trusting the claim
    try:
        u = msgpack.Unpacker(strict_map_key=False)
        u.feed(data[:4096])
        for _ in range(min(u.read_map_header(), 3)):
            key, value = u.unpack(), u.unpack()
            if key == "version" and type(value) is int and value > VERSION:
                return f"; it also claims version {value}, newer than this femtogpt reads ({VERSION})"
    except Exception:
        pass
    return ""


def _not_ours(data):
    # neither our first bytes nor our last: explain what it is, as far as that is cheap
    if data[0] in (0xDE, 0xDF) or 0x80 <= data[0] <= 0x8F:  # a msgpack map?
        try:
            obj = msgpack.unpackb(data, strict_map_key=False)
        except Exception:
            obj = None
        if isinstance(obj, dict) and "format" in obj:
            if obj["format"] == FORMAT:
                return "truncated or corrupt (no checksum entry at the end)"
            return f"not a femtogpt model file (format {_short(obj['format'])})"
    return "not a femtogpt model file"


def _check_format(obj):
    if obj.get("format") != FORMAT:
        raise _Defect(f"not a femtogpt model file (format {_short(obj.get('format'))})")
    version = obj.get("version")
    if type(version) is not int or version < 1:
        raise _Defect(f"bad version {_short(version)}, expected an integer >= 1")
    if version > VERSION:
        raise _Defect(f"version {version} is newer than this femtogpt reads ({VERSION}); upgrade femtogpt")


def _from_map(obj):
    _check_format(obj)
    missing = [k for k in _REQUIRED if k not in obj]
    unknown = [k for k in obj if k not in _REQUIRED + _OPTIONAL]
    if missing:
        raise _Defect(f"missing {_names(missing)}")
    if unknown:
        raise _Defect(f"unknown top-level key(s) {_names(unknown)}")
    hp, tokenizer, meta, logs, train_state = _check_header(obj)
    shapes = tensor_shapes(hp)
    tensors = _decode_tensors(obj["tensors"], shapes, "tensor")
    optimizer = obj.get("optimizer")
    if optimizer is not None:
        if not isinstance(optimizer, dict) or set(optimizer) != {"step", "m", "v"}:
            raise _Defect("optimizer is not a {step, m, v} map")
        step = optimizer["step"]
        if type(step) is not int or step < 0:
            raise _Defect(f"optimizer step is {_short(step)}, expected an integer >= 0")
        optimizer = {"step": step, "m": _decode_tensors(optimizer["m"], shapes, "optimizer m tensor"),
                     "v": _decode_tensors(optimizer["v"], shapes, "optimizer v tensor", nonnegative=True)}
    return ModelFile(hp=hp, tokenizer=tokenizer, tensors=tensors, tokenizer_meta=meta, optimizer=optimizer,
                     logs=logs, train_state=train_state)


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


# ---------------------------------------------------------------- helpers

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
