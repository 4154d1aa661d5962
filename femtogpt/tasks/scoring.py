"""Scoring a model on a toy task: `run_task` generates with the KV cache in this process (greedy by
default; seeded sampling with temperature > 0), judges each probe and sums the results up into the
task's headline score (TASKS[task].metric) and its details. Not here: the probes and judges
(femtogpt/tasks/probes.py) or the datasets (femtogpt/tasks/toy_data.py).
"""
import time

from femtogpt.tasks.probes import JUDGES, dummy2_table, score_dummy_text, task_probes
from femtogpt.tasks.toy_data import TASKS


def _mean(values):
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(task, results):
    """The headline score and the task's details from judged probes."""
    details = {"accuracy": _mean(r["correct"] for r in results)}
    if task == "simple_dummy2":
        table = dummy2_table(results)
        accs = [row["accuracy"] for row in table.values() if row["accuracy"] is not None]
        details.update(actions=table, actions_over_70=sum(a > 0.7 for a in accs))
        return _mean(accs), details
    if task == "addition_dummy":
        details["well_formed"] = _mean(r["well_formed"] for r in results)
    elif task == "simple_sequence":
        for key in ("letters", "delimiters", "next_letter"):
            details[key] = _mean(r[key] for r in results)
    elif task == "simple_sequence2":
        details["line2"] = _mean(r["line2"] for r in results)
        details["both_lines"] = _mean(r["both"] for r in results)
        details["columns"] = {c: _mean(r["columns"][c] for r in results) for c in results[0]["columns"]} \
            if results else {}
    return details["accuracy"], details


def sample_lines(model, tokenizer, lines, temperature, rng, max_tokens_per_line=20):
    """Generated text from a "\\n" prompt until it holds `lines` newlines (or a token budget of
    max_tokens_per_line per line runs out), cut after the last wanted newline."""
    from femtogpt.model.kv_cache import Generator
    from femtogpt.model.sampling import sample_next

    gen, ids, seen = Generator(model), [], 0
    logits = gen.feed([int(i) for i in tokenizer.encode("\n")])
    for _ in range(max_tokens_per_line * lines):
        token = sample_next(logits, temperature, rng=rng)
        ids.append(token)
        seen += tokenizer.decode([token]).count("\n")
        if seen >= lines:
            break
        logits = gen.feed([token])
    text = tokenizer.decode(ids)
    return "".join(line + "\n" for line in text.split("\n")[:lines]) if seen >= lines else text


def run_task(model, tokenizer, task, samples=None, seed=0, temperature=None, examples=5):
    """Score `model` on `task`: a dict with the headline "score", "details", "log_prompts" and a
    few "examples". temperature None: the task's default (0 = greedy; 1 for simple_dummy)."""
    from femtogpt.model.generate import generate
    import numpy as np

    samples = TASKS[task].score_samples if samples is None else int(samples)
    if temperature is None:
        temperature = 1.0 if task == "simple_dummy" else 0.0
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    def complete(prompt, chars):
        ids = generate(model, [int(i) for i in tokenizer.encode(prompt)], chars,
                       temperature=temperature, seed=rng)
        return tokenizer.decode(ids)  # each token is at least one character

    out = {"task": task, "metric": TASKS[task].metric, "samples": samples, "seed": seed,
           "temperature": temperature}
    if task == "simple_dummy":
        text = sample_lines(model, tokenizer, samples, temperature, rng)
        details = score_dummy_text(text)
        out.update(score=details["fraction"], details=details, examples=text.split("\n")[:examples * 4],
                   log_prompts=[])
    else:
        probes, log = task_probes(task, samples, seed)
        judge = JUDGES[task]
        results = []
        for p in probes + log:
            generated = complete(p["prompt"], len(p["expected"]))
            results.append({**p, "generated": generated, **judge(p["expected"], generated)})
        main, log_results = results[:len(probes)], results[len(probes):]
        out["samples"] = len(main)
        out["score"], out["details"] = summarize(task, main)
        keep = ("prompt", "expected", "generated", "correct")
        out["log_prompts"] = [{k: r[k] for k in keep} for r in log_results]
        out["examples"] = [{k: r[k] for k in keep + (("action",) if "action" in r else ())}
                           for r in main[:examples]]
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
