"""The fork's toy dataset generators (reference §7), seeded, as functions returning the text.

simple_dummy: words alternating consonant/vowel; addition_dummy: "a + b = c;" lines;
simple_dummy2: copy/shift actions on random strings; simple_sequence: a periodic letter/delimiter
string; simple_sequence2: interleaved cycles with a little noise. Each takes a size in its own unit
(words, lines, attempts, groups) defaulting to the reference's count, and a `random.Random`.
"""
import random

VOWELS, CONSONANTS = "aeiou", "bcdfghjk"


def simple_dummy(size=8000, rng=None):
    """`size` words, each followed by ";\\n": starts with a consonant not among the last 3 starts,
    alternates consonant/vowel, never repeats a letter, 4 or 6 letters (even odds)."""
    rng = rng or random.Random()
    out, recent = [], []
    for _ in range(size):
        first = rng.choice([c for c in CONSONANTS if c not in recent[-3:]])
        recent.append(first)
        word = [first]
        while True:
            if len(word) == 6 or (len(word) == 4 and rng.random() < 0.5):
                break
            pool = VOWELS if word[-1] in CONSONANTS else CONSONANTS
            word.append(rng.choice([c for c in pool if c not in word]))
        out.append("".join(word) + ";\n")
    return "".join(out)


def addition_dummy(size=8000, rng=None):
    """`size` lines "a + b = a+b;" with a, b uniform in 0..100, joined by newlines."""
    rng = rng or random.Random()
    lines = []
    for _ in range(size):
        a, b = rng.randint(0, 100), rng.randint(0, 100)
        lines.append(f"{a} + {b} = {a + b};")
    return "\n".join(lines)


def shift6(s):
    return "".join(chr(ord(c) + 6) for c in s)


def dummy2_result(data, action, prev):
    """The answer of simple_dummy2 for one line (prev: the previous line's data, or None)."""
    if action == 0:
        return ""
    if action == 9:
        return "z"
    src = data if action <= 4 else prev
    part = src[:3] if action in (1, 3, 5, 7) else src[-3:]
    return shift6(part) if action in (3, 4, 7, 8) else part


def simple_dummy2(size=50_000, rng=None):
    """`size` attempts, one line each: data ([a-f]{4,8}) + action digit + result + ";"; lines that
    would need a previous line (actions 5-8 on the first) are skipped, as in the reference."""
    rng = rng or random.Random()
    lines, prev = [], None
    for _ in range(size):
        data = "".join(rng.choice("abcdef") for _ in range(rng.randint(4, 8)))
        action = rng.randint(0, 9)
        if prev is None and 5 <= action <= 8:
            continue
        lines.append(f"{data}{action}{dummy2_result(data, action, prev)};")
        prev = data
    return "\n".join(lines)


def simple_sequence(size=2000, rng=None):
    """`size` groups letter + delimiter twice: 'a@@b##c$$d%%e^^f@@...'; deterministic."""
    chars, delims = "abcdefgh", "@#$%^"
    return "".join(chars[i % 8] + delims[i % 5] * 2 for i in range(size))


SEQ2_PARTS = ("abc", "defg", "hijkl", "mnopqrs", "tuvwxyz0123")
SEQ2_NOISE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ;\n"


def sequence2_line(i):
    s1, s2, s3, s4, s5 = SEQ2_PARTS
    return s1[i % 3] + s2[i % 4] + s3[i % 5] + s4[i % 7] * 2 + s5[i % 11] + ";\n"


def simple_sequence2(size=2000, rng=None, noise=True):
    """`size` lines of 8 characters (interleaved cycles of 3, 4, 5, 7, 7, 11); with noise each
    character is replaced with probability 0.002 by one of 64 characters."""
    rng = rng or random.Random()
    text = "".join(sequence2_line(i) for i in range(size))
    if noise:
        text = "".join(rng.choice(SEQ2_NOISE_CHARS) if rng.random() < 0.002 else c for c in text)
    return text


GENERATORS = {
    "simple_dummy": simple_dummy,
    "addition_dummy": addition_dummy,
    "simple_dummy2": simple_dummy2,
    "simple_sequence": simple_sequence,
    "simple_sequence2": simple_sequence2,
}


def generate_text(name, size=None, seed=None):
    fn = GENERATORS[name]
    rng = random.Random(seed)
    return fn(rng=rng) if size is None else fn(size, rng=rng)
