"""The model-file fuzz test: a few hundred seeded mutations of a small valid model file through the loader.

Bit flips and truncations of the raw bytes (the CRC must catch them), and, re-checksummed so that the
checks past the CRC are reached, bit flips of the body, deleted keys, values swapped for values of other
types, huge numbers in the hyperparameters, shapes and logs, edited tokenizers. Each mutation must end in
a one-line ModelFileError (or TokenizerError) naming the file, or a valid load; a valid load must then
build its Checkpoint (or be refused in one line), summarise for `info`, and peek. The whole run is a
subprocess under a 1 GB address-space limit, so a mutation that makes the loader allocate what the file
cannot hold fails the test instead of swapping.
"""
import json
import math
import random
import sys
import traceback
from pathlib import Path

from tests.hostile_files import CATASTROPHIC_REGEX, entries, run_limited, small_model, write_entries

MUTATIONS = 600
SEED = 13

HOSTILE = [None, True, False, 0, -1, 1, 3, 2**31, 2**40, 2**63 - 1, 2**64 - 1, -2**63, 0.5, -1.5, math.nan,
           math.inf, -math.inf, "", "x", "\x1b[31m\x1b]0;pwned\x07", "\u202egnp.exe", b"", b"\x00" * 7, [], [1, 2],
           {}, {"a": 1}, "float32", [2**30, 2**30], [8, 8], {"dtype": "float32", "shape": [2], "data": b"\0" * 8}]
HUGE = [10**7, 2**27, 2**30, 2**31, 2**40, 2**62, 2**63 - 1, 2**64 - 1]
HP_KEYS = ["vocab_size", "num_tokens", "embedding_degree", "num_layers", "num_heads", "head_size"]


def _paths(value, prefix=()):
    """Every (path, container) below `value`, tensor data bytes excluded from descent."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        if isinstance(v, (dict, list)) and len(out) < 5000:
            out += _paths(v, prefix + (k,))
    return out


def _at(e, path):
    for k in path[:-1]:
        e = e[k]
    return e


def _tokenizer_change(rng, e):
    spec = json.loads(e["tokenizer"])
    how = rng.randrange(5)
    if how == 0:
        spec["model"]["vocab"].pop(rng.choice(list(spec["model"]["vocab"])))   # one token fewer than vocab_size
    elif how == 1:
        e["tokenizer"] = "[" * 50_000 + "]" * 50_000                          # nested too deeply
        return "tokenizer nested"
    elif how == 2:
        spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": rng.choice(["(", CATASTROPHIC_REGEX])},
                                 "behavior": "Isolated", "invert": False}
    elif how == 3:
        spec["model"]["type"] = rng.choice(["Nope\x1b[31m", "BPE", 7])
    else:
        spec["added_tokens"] = [{"id": 10**6, "content": "\x1b[2J", "special": True}]
    e["tokenizer"] = json.dumps(spec)
    return f"tokenizer change {how}"


def mutate(rng, data, base):
    """(bytes of a mutated file, description)."""
    kind = rng.choice(["flip", "truncate", "flip+crc", "set", "set", "delete", "huge", "huge", "swap", "tokenizer"])
    if kind == "flip":
        bit = rng.randrange(len(data) * 8)
        out = bytearray(data)
        out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out), f"flip bit {bit}"
    if kind == "truncate":
        n = rng.randrange(len(data))
        return data[:n], f"truncate to {n}"
    if kind == "flip+crc":
        import msgpack
        import zlib
        body = bytearray(data[:-18])
        bit = rng.randrange(len(body) * 8)
        body[bit // 8] ^= 1 << (bit % 8)
        trailer = msgpack.packb("checksum") + msgpack.packb(f"{zlib.crc32(bytes(body)):08x}")
        return bytes(body) + trailer, f"flip bit {bit}, re-checksummed"
    e = entries(base)
    if kind == "tokenizer":
        what = _tokenizer_change(rng, e)
    elif kind == "huge":
        where = rng.choice(["hp", "hp", "shape", "log", "optimizer"])
        value = rng.choice(HUGE)
        if where == "hp":
            keys = rng.sample(HP_KEYS, rng.choice([1, 1, 2]))
            for k in keys:
                e["hyperparameters"][k] = value
            what = f"hyperparameters {keys} = {value}"
        elif where == "shape":
            name = rng.choice(list(e["tensors"]))
            shape = e["tensors"][name]["shape"]
            shape[rng.randrange(len(shape))] = value
            what = f"shape of {name} = {shape}"
        elif where == "log":
            log = rng.choice(e["logs"])
            field = rng.choice([k for k in log if k not in ("id", "kind")] or ["step"])
            log[field] = rng.choice([value, -min(value, 2**63), float(value)])  # msgpack: int64..uint64
            what = f"log {log['kind']} {field} = {log[field]}"
        else:
            e["optimizer"]["step"] = rng.choice([value, -1])
            what = f"optimizer step = {e['optimizer']['step']}"
    else:
        paths = _paths(e)
        header = [p for p in paths if p[0] not in ("tensors", "optimizer")]
        path = rng.choice(header if rng.random() < 0.6 else paths)  # the header is small but holds the most kinds
        container = _at(e, path)
        if kind == "delete":
            del container[path[-1]]
            what = f"delete {path}"
        elif kind == "swap":
            siblings = [p for p in paths if p[:-1] == path[:-1] and p != path]
            other = rng.choice(siblings) if siblings else path
            container[path[-1]], container[other[-1]] = container[other[-1]], container[path[-1]]
            what = f"swap {path} and {other}"
        else:
            container[path[-1]] = rng.choice(HOSTILE)
            what = f"set {path} = {container[path[-1]]!r}"[:200]
    out = Path(base).with_name("m.tmp")
    write_entries(out, e)
    return out.read_bytes(), what


def fuzz(workdir, count, seed):
    """Run in the memory-limited child: every mutation through the loader; print a JSON summary; exit 1
    with the mutation and the traceback on the first outcome that is not a one-line error or a load."""
    from femtogpt.io.checkpoint import from_model_file
    from femtogpt.io.info import model_summary, summary_lines
    from femtogpt.io.model_file import ModelFileError, load_model_file, peek_header
    from femtogpt.text.tokenizer import TokenizerError

    workdir = Path(workdir)
    base = small_model(workdir / "base.dat")
    data = base.read_bytes()
    rng = random.Random(seed)
    path = workdir / "mutant.dat"
    outcomes = {}
    for i in range(count):
        mutant, what = mutate(rng, data, base)
        path.write_bytes(mutant)
        try:
            try:
                mf = load_model_file(path)
            except (ModelFileError, TokenizerError) as e:
                assert "\n" not in str(e) and str(e).startswith(f"{path}: "), str(e)
                outcome = "refused"
            else:
                try:
                    from_model_file(mf)
                    outcome = "loaded"
                except (ModelFileError, TokenizerError) as e:
                    assert "\n" not in str(e) and str(e).startswith(f"{path}: "), str(e)
                    outcome = "refused at build"
                summary = model_summary(path)
                assert all("\x1b" not in line for line in summary_lines(summary)) and json.dumps(summary)
            try:
                peek_header(path)
            except ModelFileError as e:
                assert "\n" not in str(e), str(e)
        except BaseException:  # noqa: B036 -- report any escape, a MemoryError or a Rust panic included
            print(json.dumps({"failed": i, "mutation": what}), flush=True)
            traceback.print_exc()
            sys.exit(1)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(json.dumps(outcomes), flush=True)


def test_fuzzed_model_files_fail_in_one_line_or_load_within_1_gb(tmp_path):
    code = f"from tests.test_fuzz_model_file import fuzz; fuzz({str(tmp_path)!r}, {MUTATIONS}, {SEED})"
    result = run_limited(["-c", code], cwd=tmp_path, timeout=120, python=True)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert sum(outcomes.values()) == MUTATIONS
    # the mix is part of the test: most mutations are refused, yet enough load to check the valid path too
    assert outcomes["refused"] > MUTATIONS // 2 and outcomes.get("loaded", 0) > 10, outcomes
