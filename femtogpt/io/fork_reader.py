"""Read the Rust fork's model files (`*.dat`, bincode 1.3) into NumPy arrays, strictly.

Here: `read_fork_model` (file -> `ForkModel`; `parse_fork_model` does the same for bytes) and
`ForkFileError`. The layout is reference §6, checked against the fork's own files (they read to their last byte). Every
length, enum variant, bool and UTF-8 string is checked, and any problem becomes one `ForkFileError` line
naming the file and the byte offset. Stricter than the fork on purpose: trailing bytes and duplicate map
keys are errors. Every map (tokens, tensors, optimizer moments) keeps the file's order, so
io/fork_writer.py writes a parsed file back byte for byte. Not here: writing fork files (io/fork_writer.py),
converting to our checkpoint (io/fork_convert.py), or checking tensor shapes against the hyperparameters
(callers do that).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femtogpt.io.logs import INIT, INSERT_LAYER, RESET_OPTIMIZER, TRAIN_SESSION, TRAIN_STEP

# bincode 1.3 defaults: little-endian, fixed-width ints, usize = u64, Vec/String/HashMap length as u64,
# enum variant as u32, bool as one byte (0 or 1; anything else is an error in bincode too).
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")

_UNITS = ("char", "byte")                  # Unit::Char = 0, Unit::Byte = 1
_POS_ENCS = ("none", "absolute")           # PosEnc::None = 0, PosEnc::Absolute = 1: the fork's enum, not ours
_HYPERPARAMETERS = ("num_tokens", "vocab_size", "embedding_degree", "num_layers", "num_heads", "head_size")
_LOG_KINDS = (INIT, TRAIN_SESSION, TRAIN_STEP, INSERT_LAYER, RESET_OPTIMIZER)  # u32 variant index


class ForkFileError(ValueError):
    """A fork model file that cannot be read; the message is one line naming the file and the problem."""


@dataclass
class ForkModel:
    """Everything a fork `Model` holds, as plain Python and float32 NumPy arrays."""
    tokenizer_unit: str                    # "char" or "byte"
    case_sensitive: bool
    unk_id: int                            # an id in `tokens`; its bytes are b"<unk>"
    tokens: dict[int, bytes]               # id -> raw token bytes, in file (hash-map) order
    pos_enc: str                           # "none" or "absolute"
    hyperparameters: dict[str, int]        # num_tokens, vocab_size, embedding_degree, num_layers, num_heads, head_size
    tensors: dict[str, np.ndarray]         # name -> float32, shaped, C-contiguous, writable; no `pos_input`
    optimizer_step: int
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)  # "{name}_m", "{name}_v"; empty after a reset
    logs: list[dict] = field(default_factory=list)  # {"id": str, "kind": str, **fields}, oldest first


class _Reader:
    """A cursor over the file's bytes; every read checks the bounds and raises ForkFileError."""

    def __init__(self, data: bytes, name: str):
        self.data = data
        self.name = name
        self.pos = 0

    def fail(self, problem: str, at: int | None = None) -> ForkFileError:
        at = self.pos if at is None else at
        return ForkFileError(f"{self.name}: at byte {at} of {len(self.data)}: {problem}")

    def take(self, n: int, what: str) -> int:
        # returns the start offset of n bytes and advances past them
        start = self.pos
        if n > len(self.data) - start:
            raise self.fail(f"truncated: {what} needs {n} bytes, {len(self.data) - start} left", start)
        self.pos = start + n
        return start

    def u32(self, what: str) -> int:
        return _U32.unpack_from(self.data, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.data, self.take(8, what))[0]

    def f32(self, what: str) -> float:
        return _F32.unpack_from(self.data, self.take(4, what))[0]

    def flag(self, what: str) -> bool:
        start = self.take(1, what)
        b = self.data[start]
        if b > 1:
            raise self.fail(f"invalid bool {b} for {what}", start)
        return b == 1

    def variant(self, names: tuple[str, ...], what: str, where: str = "") -> str:
        start = self.pos
        v = self.u32(what)
        if v >= len(names):
            raise self.fail(f"unknown {what} variant {v}{where} (expected 0..{len(names) - 1})", start)
        return names[v]

    def length(self, item_size: int, what: str) -> int:
        # a u64 length prefix; rejected early when its items cannot fit, so garbage never allocates much
        start = self.pos
        n = self.u64(f"length of {what}")
        if n * item_size > len(self.data) - self.pos:
            items = "bytes" if item_size == 1 else "items"
            raise self.fail(f"truncated: {what} claims {n} {items}, only {len(self.data) - self.pos} bytes left", start)
        return n

    def raw(self, what: str) -> bytes:
        n = self.length(1, what)
        start = self.take(n, what)
        return bytes(self.data[start:start + n])

    def string(self, what: str) -> str:
        start = self.pos
        b = self.raw(what)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8", start) from None

    def tensor(self, what: str) -> np.ndarray:
        # Tensor<f32> { blob: Vec<f32>, shape: Vec<usize> }
        n = self.length(4, f"blob of {what}")
        start = self.take(4 * n, f"blob of {what}")
        blob = np.frombuffer(self.data, dtype="<f4", count=n, offset=start).astype(np.float32)  # a copy: writable
        shape_at = self.pos
        shape = tuple(self.u64(f"shape of {what}") for _ in range(self.length(8, f"shape of {what}")))
        if math.prod(shape) != n:
            raise self.fail(f"{what} has shape {list(shape)} but {n} values", shape_at)
        return blob.reshape(shape)

    def tensor_map(self, what: str) -> dict[str, np.ndarray]:
        out = {}
        for _ in range(self.length(16, what)):     # an entry is at least two length prefixes
            start = self.pos
            name = self.string(f"tensor name in {what}")
            if name in out:
                raise self.fail(f"duplicate tensor {name!r} in {what}", start)
            out[name] = self.tensor(f"tensor {name!r}")
        return out


def _read_log(r: _Reader, i: int) -> dict:
    kind = r.variant(_LOG_KINDS, "LogKind", f" in log {i}")
    log: dict = {"kind": kind}
    if kind == INIT:
        log["hyperparameters"] = {k: r.u64(f"log {i} {k}") for k in _HYPERPARAMETERS}
    elif kind == TRAIN_SESSION:
        log["dropout"] = r.f32(f"log {i} dropout")
        log["file"] = r.string(f"log {i} file")
        log["file_hash"] = r.string(f"log {i} file_hash")
    elif kind == TRAIN_STEP:
        log["avg_loss"] = r.f32(f"log {i} avg_loss")
        log["elapsed"] = r.u64(f"log {i} elapsed")
        log["is_gpu"] = r.flag(f"log {i} is_gpu")
    elif kind == INSERT_LAYER:
        log["index"] = r.u64(f"log {i} index")
    # ResetOptimizer is a unit variant: no fields
    return {"id": r.string(f"log {i} id"), **log}


def parse_fork_model(data: bytes, name: str = "<bytes>") -> ForkModel:
    """Parse the bytes of a fork model file; `name` is used in error messages."""
    data = bytes(data)
    if not data:
        raise ForkFileError(f"{name}: empty file, not a fork model file")
    r = _Reader(data, name)
    if len(data) >= 4 and _U32.unpack_from(data)[0] > 1:
        raise r.fail("not a fork model file: it does not start with a tokenizer Unit (u32 0 or 1)", 0)
    unit = r.variant(_UNITS, "tokenizer Unit")
    case_sensitive = r.flag("tokenizer case_sensitive")
    unk_id = r.u64("tokenizer unk")
    tokens: dict[int, bytes] = {}
    for _ in range(r.length(16, "tokenizer tokens")):  # HashMap<u64, Vec<u8>>: id, then bytes
        start = r.pos
        tid = r.u64("token id")
        if tid in tokens:
            raise r.fail(f"duplicate token id {tid}", start)
        tokens[tid] = r.raw(f"bytes of token {tid}")
    # the bytes agree with the reference: pos_enc sits between the tokenizer and the hyperparameters,
    # although the Model struct at older fork commits had no such field (added 2025-07-17, reference §6)
    pos_enc = r.variant(_POS_ENCS, "PosEnc")
    hyperparameters = {k: r.u64(f"hyperparameter {k}") for k in _HYPERPARAMETERS}
    tensors = r.tensor_map("training_state.tensors")
    optimizer_step = r.u64("optimizer step")
    optimizer_state = r.tensor_map("optimizer state")
    logs = [_read_log(r, i) for i in range(r.length(8, "logs"))]  # a log is at least a variant + id length
    if r.pos != len(data):
        # stricter than the fork: bincode::deserialize ignores trailing bytes, we treat them as damage
        raise r.fail(f"{len(data) - r.pos} trailing bytes after the model")
    return ForkModel(unit, case_sensitive, unk_id, tokens, pos_enc, hyperparameters, tensors,
                     optimizer_step, optimizer_state, logs)


def read_fork_model(path) -> ForkModel:
    """Read a fork `*.dat` model file. Raises ForkFileError (one line) if it is not a valid one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ForkFileError(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_fork_model(data, str(path))
