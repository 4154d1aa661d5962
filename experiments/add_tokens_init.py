"""add_tokens_init: which init should add-tokens give a new token's rows, mean-of-pieces or mean?

A small ascii model (E32 L2 H2 T32, no PE) trains S steps on a toy dataset; then one token that is
frequent in the held-out text is added (simple_dummy: ";\\n", which ends every line; addition_dummy:
" = "), once with each init, and each grown model trains N more steps on the text encoded the new way
(same seeded batches for both). Reported on held-out text encoded the new way: the loss right after
adding and during the N steps; the loss on the targets that are the new token; and nats per
character (comparable with the model that was not grown, trained the same N steps on the old
encoding: the "no new token" baseline). The optimizer is kept (the new rows' moments start at zero).

    python experiments/add_tokens_init.py              # S = 300, N = 200: a few minutes on 2 cores
    python experiments/add_tokens_init.py --smoke
"""
import time

import numpy as np

import common as C
from femtogpt.growth.tokens import INITS, add_tokens

CASES = {"simple_dummy": ";\n", "addition_dummy": " = "}


def configure(p):
    p.add_argument("--base-steps", type=int, default=300, help="S: steps before adding the token [300]")
    p.add_argument("--after-steps", type=int, default=200, help="N: steps after adding it [200]")
    p.add_argument("--seeds", type=int, default=3, help="runs per case, seeds --seed, --seed + 1, ... [3]")


def held_out_scores(session, text, new_id=None, max_windows=64):
    """(mean loss per token, nats per character, mean loss on targets == new_id or None) on `text`
    encoded with the session's tokenizer, over up to max_windows windows of T+1 tokens."""
    ids = C.encode(session.tokenizer, text)
    T = session.hp.num_tokens
    n = min(max_windows, (len(ids) - 1) // T)
    x = np.stack([ids[i * T:i * T + T] for i in range(n)])
    y = np.stack([ids[i * T + 1:i * T + T + 1] for i in range(n)])
    logits = session.model.logits(x).astype(np.float64)                      # (n, T, V)
    logits -= logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]           # (n, T)
    chars = len(session.tokenizer.decode(y.reshape(-1)))
    on_new = float(nll[y == new_id].mean()) if new_id is not None and (y == new_id).any() else None
    return float(nll.mean()), float(nll.sum() / chars), on_new


def run_case(args, task, token, S, N, size, every, seed):
    tok = C.tokenizer("ascii")
    text = C.file_text(task, 3000 if args.smoke else None, seed)
    cut = int(len(text) * 0.9)
    train_text, val_text = text[:cut], text[cut:]
    base = C.new_session(tok, seed=seed, **size)
    C.train(base, C.encode(tok, train_text), S, seed, label=f"{task} base", print_every=100)
    out = {"token": token, "token_share_of_held_out_chars": round(val_text.count(token) * len(token) / len(val_text), 4),
           "base": dict(zip(("loss", "nats_per_char", "loss_on_new"), held_out_scores(base, val_text)))}
    state = base.to_model_file()                                             # to restart the baseline from
    results = {}
    for init in INITS:
        grown, report = add_tokens(base, [token], init=init)
        new_id = report.first_id
        ids = C.encode(grown.tokenizer, train_text)
        loss, per_char, on_new = held_out_scores(grown, val_text, new_id)
        curve = {"step": [0], "loss": [loss], "nats_per_char": [per_char], "loss_on_new": [on_new]}
        for done in range(every, N + 1, every):
            C.train(grown, ids, every, seed, label=f"{task} {init}", print_every=0)
            loss, per_char, on_new = held_out_scores(grown, val_text, new_id)
            for k, v in (("step", done), ("loss", loss), ("nats_per_char", per_char), ("loss_on_new", on_new)):
                curve[k].append(v)
        results[init] = {"pieces": report.pieces[0], "loss_right_after": curve["loss"][0],
                         "loss_on_new_right_after": curve["loss_on_new"][0],
                         "nats_per_char_right_after": curve["nats_per_char"][0],
                         "loss_after_n": curve["loss"][-1], "nats_per_char_after_n": curve["nats_per_char"][-1],
                         "losses": curve["loss"], "curve": curve}
        C.say(f"  {task} {init}: right after {curve['loss'][0]:.4f} (on the new token "
              f"{curve['loss_on_new'][0]:.3f}), after {N} steps {curve['loss'][-1]:.4f}; nats/char "
              f"{curve['nats_per_char'][0]:.4f} -> {curve['nats_per_char'][-1]:.4f}")
    from femtogpt.io.checkpoint import from_model_file

    plain = from_model_file(state)                                           # the base, not grown
    ids = C.encode(tok, train_text)
    per_char = [held_out_scores(plain, val_text)[1]]
    for _ in range(every, N + 1, every):
        C.train(plain, ids, every, seed, label=f"{task} no new token", print_every=0)
        per_char.append(held_out_scores(plain, val_text)[1])
    out["no_new_token_nats_per_char"] = per_char
    out["inits"] = results
    C.say(f"  {task} no new token: nats/char {per_char[0]:.4f} -> {per_char[-1]:.4f}")
    return out


def main():
    args = C.parse_args(__doc__, configure)
    S, N = (10, 4) if args.smoke else (args.base_steps, args.after_steps)
    every = 2 if args.smoke else 25
    size = dict(E=16, L=1, H=2, T=16) if args.smoke else dict(E=32, L=2, H=2, T=32)
    seeds = [args.seed + i for i in range(1 if args.smoke else args.seeds)]
    t0 = time.perf_counter()
    runs = {task: [run_case(args, task, token, S, N, size, every, seed) for seed in seeds]
            for task, token in (list(CASES.items())[:1] if args.smoke else CASES.items())}
    summary = {}
    C.say(f"mean over seeds {seeds}:")
    for task, rs in runs.items():
        row = {"no_new_token_nats_per_char_after_n": float(np.mean([r["no_new_token_nats_per_char"][-1] for r in rs]))}
        for init in INITS:
            row[init] = {k: float(np.mean([r["inits"][init][k] for r in rs]))
                         for k in ("loss_right_after", "loss_on_new_right_after", "nats_per_char_right_after",
                                   "loss_after_n", "nats_per_char_after_n")}
            C.say(f"  {task} {init}: " + ", ".join(f"{k} {v:.4f}" for k, v in row[init].items()))
        C.say(f"  {task} no new token: nats_per_char_after_n {row['no_new_token_nats_per_char_after_n']:.4f}")
        summary[task] = row
    first = next(iter(runs.values()))[0]
    data = {"settings": {"base_steps": S, "after_steps": N, "eval_every": every, **size, "tokenizer": "ascii",
                         "batch_size": 32, "optimizer": "kept (new rows' moments zero)", "seeds": seeds},
            "summary": summary, "runs": runs, "inits": first["inits"]}
    C.write_results(args, "add_tokens_init", data, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
