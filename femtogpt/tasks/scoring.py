"""Task scores on the toy datasets (reference §7): did the model learn the generator's pattern?

Each task builds probes (a prompt and the text a correct model must continue it with) from a fresh
dump seeded apart from any training data, and judges a generation with a pure function of
(expected, generated), so every judge is testable on hand-made strings. `run_task` generates with
the KV cache in this process (greedy by default; seeded sampling with temperature > 0).

  simple_dummy2     per-action accuracy (0-9), the reference eval(): up to 10 previous lines + the
                    line cut after its action digit, last 60 chars; correct = result + ";\\n" follows.
  addition_dummy    exact answer "c;" after 3 context lines + "a + b = ".
  simple_sequence   the 40 phases of the cycle, prompt "c%%d" (log #42's form); the next 14 chars,
                    split into letters and delimiters (the log: from-scratch models get only the
                    delimiters). Expected answers come from the generator, so d%%e -> ...h$$a%%.
  simple_sequence2  prompts are lines the training dump never contains (index >= its size, within
                    the 4620-line cycle): one line in, the next two lines out (log #43's form).
  simple_dummy      open generation from "\\n" at temperature 1: the fraction of words that are
                    valid (consonant first, alternating, no repeated letter, length 4 or 6).
The log's own prompts are always scored too, under "log_prompts".
"""
import random
import re
import time

from femtogpt.tasks.toy_data import (CONSONANTS, SEQ2_PERIOD, SEQ_CHARS, SEQ_DELIMS, VOWELS, addition_dummy,
                            sequence2_line, sequence_group, simple_dummy2)

TASKS = ("simple_dummy", "addition_dummy", "simple_dummy2", "simple_sequence", "simple_sequence2")
DEFAULT_SAMPLES = {"simple_dummy": 200, "addition_dummy": 100, "simple_dummy2": 100,
                   "simple_sequence": 40, "simple_sequence2": 100}
HEADLINE = {"simple_dummy": "valid word fraction", "addition_dummy": "exact-answer accuracy",
            "simple_dummy2": "mean per-action accuracy", "simple_sequence": "exact 14-char continuation",
            "simple_sequence2": "next-line accuracy"}
LOG_PROMPTS = {  # log #42 / #43 and the reference's addition prompt
    "simple_sequence": ["c%%d", "a$$b", "d%%e"],
    "simple_sequence2": ["beloot;\n", "agissy;\n", "cfkqqt;\n"],
    "addition_dummy": ["13 + 29 = "],
}


def probe_rng(task, seed):
    """The random source of a task's probes: a string seed, so never the stream of an int-seeded
    training dump (`dummy-data --seed N`)."""
    return random.Random(f"femtogpt-score:{task}:{seed}")


def starts_with(expected, generated):
    return generated.startswith(expected)


# simple_dummy -------------------------------------------------------------------------------------
def check_dummy_word(word):
    """None if `word` follows simple_dummy's rules, else the first broken rule."""
    if not word or any(c not in VOWELS + CONSONANTS for c in word):
        return "charset"
    if word[0] not in CONSONANTS:
        return "start"
    if any((a in CONSONANTS) == (b in CONSONANTS) for a, b in zip(word, word[1:])):
        return "alternation"
    if len(set(word)) != len(word):
        return "repeat"
    if len(word) not in (4, 6):
        return "length"
    return None


def score_dummy_text(text):
    """Judge generated simple_dummy text line by line; the last (unfinished) line is ignored.
    A line is valid when it is a valid word followed by ";" and nothing else."""
    lines = text.split("\n")[:-1]
    reasons, words, starts_ok, prev = {}, [], 0, []
    for line in lines:
        reason = "terminator" if not line.endswith(";") else check_dummy_word(line[:-1])
        if reason is None:
            word = line[:-1]
            starts_ok += word[0] not in prev[-3:]  # the generator's "not among the last 3 starts"
            prev.append(word[0])
            words.append(word)
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    n = len(lines)
    return {"lines": n, "valid": len(words), "fraction": len(words) / n if n else 0.0,
            "invalid_reasons": dict(sorted(reasons.items())),
            "length4": sum(len(w) == 4 for w in words), "length6": sum(len(w) == 6 for w in words),
            "unique": len(set(words)), "start_rule": starts_ok / len(words) if words else 0.0}


# simple_dummy2 ------------------------------------------------------------------------------------
DUMMY2_LINE = re.compile(r"[a-f]{4,8}(\d)([a-z]*;)")


def dummy2_probes(text, n):
    """The reference eval(): for each line once more than 3 previous lines exist, prompt = the
    previous lines (up to 10) + the line cut after its action digit, keeping the last 60 chars."""
    probes, previous = [], []
    for line in text.split("\n"):
        m = DUMMY2_LINE.fullmatch(line)
        if m is None:
            raise ValueError(f"not a simple_dummy2 line: {line!r}")
        if len(previous) > 3:
            cut = line[:m.start(2)]
            prompt = "\n".join(previous + [cut])[-60:]
            probes.append({"prompt": prompt, "expected": m.group(2) + "\n", "action": int(m.group(1))})
            if len(probes) == n:
                break
        previous = (previous + [line])[-10:]
    return probes


def dummy2_table(results):
    """{action: {"correct", "total", "accuracy"}} for actions 0-9, from judged probes."""
    table = {}
    for a in range(10):
        rows = [r for r in results if r["action"] == a]
        c = sum(r["correct"] for r in rows)
        table[a] = {"correct": c, "total": len(rows), "accuracy": c / len(rows) if rows else None}
    return table


# addition_dummy -----------------------------------------------------------------------------------
ADDITION_LINE = re.compile(r"(\d+) \+ (\d+) = (\d+);")
ADDITION_PROMPT = re.compile(r"(\d+) \+ (\d+) = $")


def addition_probes(text, n, context_lines=3):
    """Prompt = `context_lines` previous lines + "\\n" + "a + b = "; expected "a+b;"."""
    lines, probes = text.split("\n"), []
    for k in range(context_lines, len(lines)):
        a, b, c = ADDITION_LINE.fullmatch(lines[k]).groups()
        prompt = "\n".join(lines[k - context_lines:k] + [f"{a} + {b} = "])
        probes.append({"prompt": prompt, "expected": f"{c};"})
        if len(probes) == n:
            break
    return probes


def judge_addition(expected, generated):
    return {"correct": starts_with(expected, generated),
            "well_formed": re.match(r"\d+;", generated) is not None}


# simple_sequence ----------------------------------------------------------------------------------
SEQ_CYCLE = "".join(sequence_group(i) for i in range(40))  # 120 chars, lcm(8, 5) groups


def sequence_continuation(prompt, n=14):
    """The n characters that follow `prompt` in simple_sequence (wrapping h -> a)."""
    doubled = SEQ_CYCLE * (2 + (len(prompt) + n) // len(SEQ_CYCLE))
    at = doubled.find(prompt)
    if at < 0:
        raise ValueError(f"{prompt!r} does not occur in simple_sequence")
    return doubled[at + len(prompt):at + len(prompt) + n]


def sequence_probes():
    """All 40 phases: group i + the letter of group i+1 (e.g. "c%%d"); the next 14 chars."""
    probes = []
    for i in range(40):
        prompt = sequence_group(i) + SEQ_CHARS[(i + 1) % 8]
        probes.append({"prompt": prompt, "expected": sequence_continuation(prompt)})
    return probes


def judge_sequence(expected, generated):
    """exact; and position by position, letters vs delimiters (from the expected text's kinds)."""
    got = generated[:len(expected)].ljust(len(expected), "\0")
    letters = [i for i, c in enumerate(expected) if c in SEQ_CHARS]
    delims = [i for i, c in enumerate(expected) if c in SEQ_DELIMS]
    return {"correct": got == expected,
            "letters": sum(got[i] == expected[i] for i in letters) / len(letters) if letters else None,
            "delimiters": sum(got[i] == expected[i] for i in delims) / len(delims) if delims else None,
            "next_letter": got[letters[0]] == expected[letters[0]] if letters else None}


# simple_sequence2 ---------------------------------------------------------------------------------
SEQ2_INDEX = {sequence2_line(i): i for i in range(SEQ2_PERIOD)}


def sequence2_next(line, n=2):
    """The n lines after `line` (with or without its newline) in the noise-free cycle."""
    i = SEQ2_INDEX.get(line if line.endswith("\n") else line + "\n")
    if i is None:
        raise ValueError(f"{line!r} is not a simple_sequence2 line")
    return "".join(sequence2_line((i + k) % SEQ2_PERIOD) for k in range(1, n + 1))


def sequence2_probes(n, rng, train_lines=2000):
    """n lines never in a `train_lines`-line training dump (index in train_lines..4619); prompt =
    that line, expected = the next two lines."""
    pool = range(train_lines, SEQ2_PERIOD) if train_lines < SEQ2_PERIOD - 2 else range(SEQ2_PERIOD)
    picks = rng.sample(pool, min(n, len(pool)))
    return [{"prompt": sequence2_line(i), "expected": sequence2_next(sequence2_line(i))} for i in picks]


def judge_sequence2(expected, generated):
    """line1 / line2 exact (each with its newline); columns: per cycle (3, 4, 5, 7, 11) the share of
    the two lines' characters right."""
    got = generated[:len(expected)].ljust(len(expected), "\0")
    columns = {}
    for name, cols in (("c3", [0]), ("c4", [1]), ("c5", [2]), ("c7", [3, 4]), ("c11", [5])):
        pos = [k * 8 + c for k in range(2) for c in cols]
        columns[name] = sum(got[p] == expected[p] for p in pos) / len(pos)
    return {"correct": got[:8] == expected[:8], "line2": got[8:16] == expected[8:16],
            "both": got == expected, "columns": columns}


# running -----------------------------------------------------------------------------------------
def task_probes(task, samples, seed):
    """(probes, log probes) for a question/answer task."""
    rng = probe_rng(task, seed)
    log = []
    if task == "simple_dummy2":
        # enough attempts for `samples` probes; the dump's first lines are context only
        probes = dummy2_probes(simple_dummy2(samples + 64, rng), samples)
    elif task == "addition_dummy":
        probes = addition_probes(addition_dummy(samples + 3, rng), samples)
        log = [{"prompt": p, "expected": "%d;" % sum(map(int, ADDITION_PROMPT.match(p).groups()))}
               for p in LOG_PROMPTS[task]]
    elif task == "simple_sequence":
        probes = sequence_probes()[:samples]
        log = [{"prompt": p, "expected": sequence_continuation(p)} for p in LOG_PROMPTS[task]]
    elif task == "simple_sequence2":
        probes = sequence2_probes(samples, rng)
        log = [{"prompt": p, "expected": sequence2_next(p)} for p in LOG_PROMPTS[task]]
    else:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return probes, log


JUDGES = {"simple_dummy2": lambda e, g: {"correct": starts_with(e, g)},
          "addition_dummy": judge_addition, "simple_sequence": judge_sequence,
          "simple_sequence2": judge_sequence2}


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
    from femtogpt.model.generate import Generator, sample_next

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

    samples = DEFAULT_SAMPLES[task] if samples is None else int(samples)
    if temperature is None:
        temperature = 1.0 if task == "simple_dummy" else 0.0
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    def complete(prompt, chars):
        ids = generate(model, [int(i) for i in tokenizer.encode(prompt)], chars,
                       temperature=temperature, seed=rng)
        return tokenizer.decode(ids)  # each token is at least one character

    out = {"task": task, "metric": HEADLINE[task], "samples": samples, "seed": seed,
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
