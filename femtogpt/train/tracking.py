"""Training statistics recorded every N steps (`train --track-every N`), compactly, into the logs.

A tracked step records, after its update:
    grad_norm            the global L2 norm of the step's gradient
    <group>.grad         the gradient's L2 norm over a group of tensors
    <group>.update       ||weights after - weights before|| / ||weights before|| over the group
    L<l>.rms             the RMS of the residual stream leaving layer l (X_{l+1}), on the step's first
                         work unit, by a forward without dropout
Groups: embedding, head (head norm and map), and per layer L<l>.attn (qkv, proj), L<l>.ffn
(feedforward1/2), L<l>.norm (its two LayerNorms). A Track log is {step, values: float32 bytes}, the
names being in its TrainSession's track_names: about 4 bytes a statistic.

Tracking reads the gradient and the weights and runs a forward on buffers the next step overwrites
before it reads them; the training result is bitwise the same with and without it (tested).
"""
import numpy as np

from femtogpt.io.logs import TRACK, TRAIN_SESSION, new_log
from femtogpt.model.gpt import unit_bounds


def tensor_groups(hp):
    """{group name: [internal tensor names]} (engine/params.py internal_layout names)."""
    groups = {"embedding": ["token_embedding"]}
    for l in range(hp.num_layers):
        groups[f"L{l}.attn"] = [f"qkv_{l}", f"proj_{l}_weights", f"proj_{l}_bias"]
        groups[f"L{l}.ffn"] = [f"feedforward{k}_{l}_{part}" for k in (1, 2) for part in ("weights", "bias")]
        groups[f"L{l}.norm"] = [f"{n}_{l}_{part}" for n in ("norm", "atten_norm") for part in ("coeff", "bias")]
    groups["head"] = ["head_norm_coeff", "head_norm_bias", "head_map_weights", "head_map_bias"]
    return groups


def track_names(hp):
    """The statistics a Track log holds, in its order."""
    groups = list(tensor_groups(hp))
    return (["grad_norm"] + [f"{g}.grad" for g in groups] + [f"{g}.update" for g in groups]
            + [f"L{l}.rms" for l in range(hp.num_layers)])


def _norm(arrays):
    return float(np.sqrt(sum(float(np.dot(a.ravel().astype(np.float64), a.ravel().astype(np.float64)))
                             for a in arrays)))


def track(model, before, ids, units, step):
    """The Track log of the step just done: `before`, a copy of the flat weights before its update;
    ids (B, T), the step's batch (its first unit is traced)."""
    params, hp = model.params, model.hp
    groups = tensor_groups(hp)
    grads, values = params.grads.views, params.values.views
    old = type(params.values)(hp, params.dtype, flat=before).views  # FlatBuffers over the copy
    stats = [_norm([params.grad])]
    stats += [_norm([grads[n] for n in names]) for names in groups.values()]
    for names in groups.values():
        moved = _norm([values[n] - old[n] for n in names])
        stats.append(moved / max(_norm([old[n] for n in names]), 1e-30))
    first = ids[:unit_bounds(len(ids), units)[1]]
    resid = model.forward_trace(first).resid[1:]                 # (L, b, T, C): X_1 .. X_L
    stats += [float(np.sqrt(np.mean(np.square(x.astype(np.float64))))) for x in resid]
    return new_log(TRACK, step=int(step), values=np.asarray(stats, "<f4").tobytes())


def tracked_series(logs):
    """{statistic name: (steps, values)} from a model's logs (Track logs read with the names of the
    TrainSession before them)."""
    out, names = {}, []
    for log in logs:
        kind = log.get("kind")
        if kind == TRAIN_SESSION:
            names = log.get("track_names") or []
        elif kind == TRACK and names:
            values = np.frombuffer(bytes(log["values"]), "<f4")
            for name, value in zip(names, values):
                steps, ys = out.setdefault(name, ([], []))
                steps.append(log["step"])
                ys.append(float(value))
    return out
