"""What a correct model does on each toy task (reference §7): the probes (a prompt and the text a correct
model continues it with, from a fresh dump seeded apart from any training data) and the judges, pure
functions of (expected, generated), so every judge is testable on hand-made strings.

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
The log's own prompts are always probed too (`task_probes`' second list). Not here: running a model on
them and summing up (femtogpt/tasks/scoring.py).
"""
import random
import re

from femtogpt.tasks.toy_data import (CONSONANTS, SEQ2_PERIOD, SEQ_CHARS, SEQ_DELIMS, TASKS, VOWELS, addition_dummy,
                                     sequence2_line, sequence_group, simple_dummy2)

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


# every task ------------------------------------------------------------------------------------
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
