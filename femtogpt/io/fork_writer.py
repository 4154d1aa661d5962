"""Write the Rust fork's model files (`*.dat`, bincode 1.3): `encode_fork_model` (ForkModel -> bytes) and
`write_fork_model` (checked, then written atomically), the mirror of io/fork_reader.py.

The layout is reference §6, field by field: little-endian, fixed-width integers, usize as u64, u64
length prefixes, enum variants as u32, bool as one byte. HashMap entries (token ids, tensors, optimizer
moments) are written in the order of the ForkModel's dicts, which the reader keeps in file order, so
writing a parsed file gives back its exact bytes. Everything is checked before a byte is written (every
integer fits a u64, every tensor is float32 with a matching shape, every log kind and field is the
fork's), and the bytes are parsed back before they reach the disk: a file we write is one the reader
(and so the fork, whose format it follows) accepts. Not here: building a ForkModel from a femtogpt
model (io/fork_convert.py).
"""
from __future__ import annotations

import struct

import numpy as np

from femtogpt.io.fork_reader import (_HYPERPARAMETERS, _LOG_KINDS, _POS_ENCS, _UNITS, ForkFileError, ForkModel,
                                     parse_fork_model)
from femtogpt.io.logs import INIT, INSERT_LAYER, TRAIN_SESSION, TRAIN_STEP

_U64_MAX = 2**64 - 1
_LOG_FIELDS = {INIT: ("hyperparameters",), TRAIN_SESSION: ("dropout", "file", "file_hash"),
               TRAIN_STEP: ("avg_loss", "elapsed", "is_gpu"), INSERT_LAYER: ("index",)}


class _Writer:
    """Bytes in bincode's layout; each write checks its value and raises ForkFileError naming `what`."""

    def __init__(self, name: str):
        self.name = name
        self.chunks: list[bytes] = []

    def fail(self, problem: str) -> ForkFileError:
        return ForkFileError(f"{self.name}: cannot write it as a fork model file: {problem}")

    def u32(self, v: int) -> None:
        self.chunks.append(struct.pack("<I", v))

    def u64(self, v, what: str) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= _U64_MAX:
            raise self.fail(f"{what} is {v!r}, expected an integer in 0..2**64-1")
        self.chunks.append(struct.pack("<Q", int(v)))

    def f32(self, v, what: str) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)):
            raise self.fail(f"{what} is {v!r}, expected a number")
        self.chunks.append(np.float32(v).astype("<f4").tobytes())   # NaN and inf pass, as in the fork's f32

    def flag(self, v, what: str) -> None:
        if not isinstance(v, (bool, np.bool_)):
            raise self.fail(f"{what} is {v!r}, expected true or false")
        self.chunks.append(b"\x01" if v else b"\x00")

    def variant(self, value, names: tuple[str, ...], what: str) -> None:
        if value not in names:
            raise self.fail(f"{what} is {value!r}, the fork knows only {', '.join(names)}")
        self.u32(names.index(value))

    def raw(self, b, what: str) -> None:
        if not isinstance(b, (bytes, bytearray)):
            raise self.fail(f"{what} is a {type(b).__name__}, expected bytes")
        self.u64(len(b), f"length of {what}")
        self.chunks.append(bytes(b))

    def string(self, s, what: str) -> None:
        if not isinstance(s, str):
            raise self.fail(f"{what} is {s!r}, expected a string")
        try:
            self.raw(s.encode("utf-8"), what)
        except UnicodeEncodeError:
            raise self.fail(f"{what} is not valid UTF-8") from None

    def tensor(self, a, what: str) -> None:
        # Tensor<f32> { blob: Vec<f32>, shape: Vec<usize> }
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            raise self.fail(f"{what} is not a float32 array")
        self.u64(a.size, f"size of {what}")
        self.chunks.append(np.ascontiguousarray(a, dtype="<f4").tobytes())
        self.u64(a.ndim, f"rank of {what}")
        for s in a.shape:
            self.u64(s, f"shape of {what}")

    def tensor_map(self, d: dict, what: str) -> None:
        self.u64(len(d), f"length of {what}")
        for name, a in d.items():
            self.string(name, f"a tensor name in {what}")
            self.tensor(a, f"tensor {name!r}")


def _log(w: _Writer, log: dict, i: int) -> None:
    kind = log.get("kind")
    w.variant(kind, _LOG_KINDS, f"the kind of log {i}")
    fields = _LOG_FIELDS.get(kind, ())
    extra = sorted(set(log) - {"id", "kind", *fields})
    missing = [f for f in fields if f not in log]
    if extra or missing:
        raise w.fail(f"log {i} ({kind}) has " + (f"fields the fork has no place for: {', '.join(extra)}" if extra
                                                 else f"no {missing[0]}"))
    if kind == INIT:
        hp = log["hyperparameters"]
        if not isinstance(hp, dict) or list(hp) != list(_HYPERPARAMETERS):
            raise w.fail(f"log {i} (Init) hyperparameters must be {', '.join(_HYPERPARAMETERS)}, in that order")
        for k in _HYPERPARAMETERS:
            w.u64(hp[k], f"log {i} {k}")
    elif kind == TRAIN_SESSION:
        w.f32(log["dropout"], f"log {i} dropout")
        w.string(log["file"], f"log {i} file")
        w.string(log["file_hash"], f"log {i} file_hash")
    elif kind == TRAIN_STEP:
        w.f32(log["avg_loss"], f"log {i} avg_loss")
        w.u64(log["elapsed"], f"log {i} elapsed")
        w.flag(log["is_gpu"], f"log {i} is_gpu")
    elif kind == INSERT_LAYER:
        w.u64(log["index"], f"log {i} index")
    w.string(log.get("id"), f"the id of log {i}")


def encode_fork_model(m: ForkModel, name: str = "<fork model>") -> bytes:
    """The bytes of `m` as the fork's `bincode::serialize(&Model)` lays them out, map entries in dict
    order. Raises ForkFileError (one line, naming `name`) for a value the format cannot hold."""
    w = _Writer(name)
    w.variant(m.tokenizer_unit, _UNITS, "the tokenizer unit")
    w.flag(m.case_sensitive, "tokenizer case_sensitive")
    w.u64(m.unk_id, "tokenizer unk")
    if m.unk_id not in m.tokens:
        raise w.fail(f"the unk id {m.unk_id} is not a token id")
    w.u64(len(m.tokens), "the number of tokens")
    for tid, b in m.tokens.items():
        w.u64(tid, "a token id")
        w.raw(b, f"token {tid}")
    w.variant(m.pos_enc, _POS_ENCS, "pos_enc")
    if list(m.hyperparameters) != list(_HYPERPARAMETERS):
        raise w.fail(f"the hyperparameters must be {', '.join(_HYPERPARAMETERS)}, in that order")
    for k in _HYPERPARAMETERS:
        w.u64(m.hyperparameters[k], f"hyperparameter {k}")
    w.tensor_map(m.tensors, "training_state.tensors")
    w.u64(m.optimizer_step, "optimizer step")
    w.tensor_map(m.optimizer_state, "optimizer state")
    w.u64(len(m.logs), "the number of logs")
    for i, log in enumerate(m.logs):
        _log(w, log, i)
    return b"".join(w.chunks)


def write_fork_model(path, m: ForkModel) -> None:
    """Encode `m`, parse the bytes back (a file we write always reads), then replace `path` atomically.
    ForkFileError (one line) when `m` cannot be written; any existing file is then left untouched."""
    from femtogpt.atomic import AtomicWriteError, write_atomically

    data = encode_fork_model(m, str(path))
    parse_fork_model(data, str(path))
    try:
        write_atomically(path, data)
    except AtomicWriteError as e:
        raise ForkFileError(str(e)) from None
