"""The msgpack model file: save (validated, then written atomically) and the validated load.

Here: `ModelFile` (everything a file holds), `save_model_file` (validates, then writes with
femtogpt/atomic.py: a temp file in the same directory, fsync, rename, fsync of the directory),
`load_model_file` (checks every byte; any defect is one `ModelFileError` line naming the file) and
`peek_header` (the small entries, without the tensors). Not here: what a file may hold and the checks
save and load share (femtogpt/io/model_schema.py: the tokenizer's size is checked there too), or building
Parameters/AdamW from a file, with the memory check before it (femtogpt/io/checkpoint.py).

Integrity: the file is one msgpack map whose LAST entry is `"checksum": <8 lowercase hex digits>`, the
CRC-32 (zlib/IEEE, as in gzip and PNG) of every byte before that entry, so the file always ends with the
18 bytes b"\\xa8checksum\\xa8" + 8 hex digits. CRC-32 detects every error burst of up to 32 bits, hence
every single-bit flip in the covered bytes; a flip inside the trailer breaks its fixed 10-byte prefix or
turns a digit into another byte (another digit, an uppercase letter, a non-digit), and the digest is
compared exactly. A truncated file loses its trailer. The loader checks this before it trusts any other
byte, and the rule holds for every version, so a reader verifies integrity before it reads the version.
"""
from __future__ import annotations

import os
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from femtogpt.atomic import AtomicWriteError, write_atomically
from femtogpt.config import Hyperparameters
from femtogpt.io.model_schema import (_HEADER, _OPTIONAL, _REQUIRED, FORMAT, VERSION, _check_arrays, _check_format,
                                      _check_header, _decode_tensors, _Defect, _names, _short, _unique_map,
                                      _unstorable, check_count, check_tokenizer, tensor_shapes)
from femtogpt.model.memory import ModelTooLarge, check_fits
from femtogpt.text.printable import printable

__all__ = ["FORMAT", "VERSION", "ModelFile", "ModelFileError", "load_model_file", "peek_header", "save_model_file",
           "tensor_shapes"]

_MAGIC = msgpack.packb("format") + msgpack.packb(FORMAT)            # our files: a fixmap header, then this
_TRAILER_PREFIX = msgpack.packb("checksum") + b"\xa8"               # key, then a fixstr of 8 hex digits
_TRAILER_LEN = len(_TRAILER_PREFIX) + 8
_FOREIGN = ("not a femtogpt model file", "empty file")  # how the defects of a file that is not ours begin


class ModelFileError(ValueError):
    """A model file that cannot be read or written; str() is one line naming the file and the defect.
    `foreign`: the file is not a femtogpt model file at all (rather than a damaged or invalid one)."""

    def __init__(self, message, foreign=False):
        super().__init__(" ".join(str(message).splitlines()))
        self.foreign = foreign


@dataclass(eq=False)
class ModelFile:
    hp: Hyperparameters
    tokenizer: str                     # the Hugging Face tokenizer JSON, exactly as Tokenizer.to_str() gives it
    tensors: dict                      # reference name -> float32 array; loaded: writable C-contiguous copies
    tokenizer_meta: dict = field(default_factory=dict)   # our tokenizer settings (str keys)
    optimizer: dict | None = None      # {"step": int, "m": {name: arr}, "v": {name: arr}}; None: none stored
    logs: list = field(default_factory=list)             # [{"id", "kind", **fields}], oldest first
    train_state: dict = field(default_factory=dict)      # what an exact resume needs: seed, RNG, data cursor
    source: str | None = field(default=None, compare=False)  # the file it was loaded from, for messages
    checked_tokenizer: object = field(default=None, compare=False, repr=False)  # loaded: the TextTokenizer
    #   the loader built from `tokenizer` while checking it (io/checkpoint.model_tokenizer reuses it)


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
    try:
        write_atomically(path, _with_checksum(_chunks(header, n_entries, shapes, mf)))
    except AtomicWriteError as e:
        raise ModelFileError(str(e)) from None


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
        check_tokenizer(mf.tokenizer, mf.tokenizer_meta, mf.hp)
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


# ---------------------------------------------------------------- load

def load_model_file(path) -> ModelFile:
    """Read, verify and validate a model file; every defect is a one-line ModelFileError naming the file."""
    path = Path(path)
    return load_model_bytes(_read(path), path)


def read_model_bytes(path):
    """A model file's bytes, unverified (load_model_bytes verifies them); a file that cannot be read is one
    ModelFileError line. For sending a model to other processes, which then load the same bytes."""
    return _read(Path(path))


def load_model_bytes(data, path):
    """Verify and validate the bytes of a model file read from `path` (named in messages), like
    load_model_file."""
    try:
        obj = _verified_map(data)
        data = None  # free the file's bytes before the arrays are built
        return _from_map(obj, str(path))
    except _Defect as e:
        raise ModelFileError(f"{path}: {e}", foreign=str(e).startswith(_FOREIGN)) from None
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to load it") from None
    except Exception as e:  # a bug or a case not foreseen: still one line, never a traceback
        raise ModelFileError(f"{path}: unreadable model file ({type(e).__name__}: {printable(e, 200)})") from None


def is_model_file(path):
    """Does `path` start like a femtogpt model file (its first bytes only; nothing is verified)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(1 + len(_MAGIC))
    except OSError:
        return False
    return len(head) == 1 + len(_MAGIC) and 0x80 <= head[0] <= 0x8F and head[1:] == _MAGIC


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
        raise ModelFileError(f"{path}: truncated or corrupt ({type(e).__name__}: {printable(e, 200)})") from None


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
            size = os.fstat(f.fileno()).st_size
            check_fits(2 * size, "reading it")   # its bytes, then its arrays
            return f.read()
    except ModelTooLarge as e:
        raise ModelFileError(f"{path}: {e}") from None
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to read it") from None
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
        raise _Defect(f"corrupt: not valid msgpack ({printable(e, 120) if str(e) else type(e).__name__})") from None
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


def _from_map(obj, source=None):
    _check_format(obj)
    missing = [k for k in _REQUIRED if k not in obj]
    unknown = [k for k in obj if k not in _REQUIRED + _OPTIONAL]
    if missing:
        raise _Defect(f"missing {_names(missing)}")
    if unknown:
        raise _Defect(f"unknown top-level key(s) {_names(unknown)}")
    hp, tokenizer, meta, logs, train_state = _check_header(obj)
    text_tokenizer = check_tokenizer(tokenizer, meta, hp)
    check_count(obj["tensors"], hp, "tensor")  # before a name is built: num_layers may be 10**7
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
                     logs=logs, train_state=train_state, source=source, checked_tokenizer=text_tokenizer)
