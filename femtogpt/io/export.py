"""Plain-tensor exports of a model: safetensors (no dependency: the format is a length, a JSON header
and the raw bytes) and NumPy .npz. Tensors carry the reference's names (head_{l}_{h}_q/k/v per head,
as in the model file); the header holds what is needed to use them again: the hyperparameters, the
tokenizer (Hugging Face JSON) and the optimizer step; a learned position table is the tensor
`pos_embedding` (T, E), and a rotary model's metadata says how its queries and keys are turned
("rotary": base and pairing, engine/ops/rotary.py). No claim of Hugging Face transformers
compatibility: femtoGPT's architecture (per-head q/k/v, residuals from the normed input) has no
matching transformers class.

safetensors layout: u64 little-endian N, N bytes of UTF-8 JSON padded with spaces to a multiple of 8,
then the tensors' little-endian bytes back to back in header order, each entry
{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} relative to the end of the header.
"""
import io
import json
import struct

import numpy as np

from femtogpt.atomic import AtomicWriteError, write_atomically
from femtogpt.io.model_file import ModelFileError

FORMATS = ("safetensors", "npz")


def export_metadata(checkpoint):
    """{str: str}: what a reader needs besides the tensors."""
    from femtogpt.engine.ops.rotary import ROPE_BASE

    hp = checkpoint.hp
    rotary = {"rotary": json.dumps({"base": ROPE_BASE, "pairing": "interleaved",
                                    "rotated": "columns (2i, 2i+1) of each head of q and k by position * "
                                               "base^(-2i/head_size)"})} if hp.pos_enc == "rotary" else {}
    return {
        "format": "femtogpt",
        "hyperparameters": json.dumps({
            "vocab_size": hp.vocab_size, "num_tokens": hp.num_tokens, "embedding_degree": hp.embedding_degree,
            "num_layers": hp.num_layers, "num_heads": hp.num_heads, "head_size": hp.head_size,
            "pos_enc": hp.pos_enc}),
        "tokenizer": checkpoint.tokenizer.to_json(),
        "tokenizer_meta": json.dumps(checkpoint.tokenizer.meta()),
        "step": str(checkpoint.step),
        **rotary,
    }


def _tensors(checkpoint):
    return {name: np.ascontiguousarray(view, dtype="<f4")
            for name, view in sorted(checkpoint.model.params.named().items())}


def safetensors_chunks(tensors, metadata):
    """The byte chunks of a safetensors file holding `tensors` ({name: float32 array})."""
    header, offset = {"__metadata__": metadata}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    yield struct.pack("<Q", len(text))
    yield text
    for a in tensors.values():
        yield memoryview(a.reshape(-1)).cast("B")


def npz_bytes(tensors, metadata):
    buf = io.BytesIO()
    np.savez(buf, **tensors, __metadata__=np.array(json.dumps(metadata)))
    return buf.getvalue()


def export(checkpoint, path, fmt):
    """Write the checkpoint's weights to `path` atomically in `fmt`; returns (tensor count, bytes). A failed
    write is a one-line ModelFileError, like a failed model-file save."""
    tensors, metadata = _tensors(checkpoint), export_metadata(checkpoint)
    if fmt == "safetensors":
        chunks = list(safetensors_chunks(tensors, metadata))
    elif fmt == "npz":
        chunks = [npz_bytes(tensors, metadata)]
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    try:
        write_atomically(path, chunks)
    except AtomicWriteError as e:
        raise ModelFileError(str(e)) from None
    return len(tensors), sum(len(memoryview(c)) for c in chunks)
