"""The toy dataset generators (reference §7): each one's distribution, seeded determinism, the
reference's exact output framing, and the dummy_data/ scripts' command line."""
import collections
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from femtogpt.tasks.toy_data import (CONSONANTS, SEQ2_NOISE_CHARS, TASKS, VOWELS,
                            dummy2_result, file_text, generate_text, mask, sequence2_line)

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "dummy_data"


@pytest.fixture(scope="module")
def full():
    """Each dataset at the reference's size, seed 7."""
    return {name: generate_text(name, seed=7) for name in TASKS}


@pytest.mark.parametrize("name", list(TASKS))
def test_seeded_determinism(name):
    assert generate_text(name, 300, seed=1) == generate_text(name, 300, seed=1)
    if name != "simple_sequence":  # deterministic by design
        assert generate_text(name, 300, seed=1) != generate_text(name, 300, seed=2)


def test_simple_dummy_distribution(full):
    text = full["simple_dummy"]
    assert text.endswith(";\n") and file_text("simple_dummy", 5, 1).endswith(";\n\n")  # print() adds one
    words = text.split(";\n")[:-1]
    assert len(words) == 8000 and set(text) == set(VOWELS + CONSONANTS + ";\n")  # 15 characters
    assert 50_000 < len(text) < 62_000                                           # ~56 KB
    for w in words:
        assert w[0] in CONSONANTS and len(w) in (4, 6) and len(set(w)) == len(w)
        assert all((a in CONSONANTS) != (b in CONSONANTS) for a, b in zip(w, w[1:]))
    starts = [w[0] for w in words]
    assert all(s not in starts[max(0, i - 3):i] for i, s in enumerate(starts))
    short = sum(len(w) == 4 for w in words) / len(words)
    assert abs(short - 0.5) < 0.03                                                # even odds
    counts = collections.Counter(starts)
    assert set(counts) == set(CONSONANTS) and min(counts.values()) > 700          # ~1000 each


def test_addition_dummy_distribution(full):
    lines = full["addition_dummy"].split("\n")
    assert len(lines) == 8000 and set(full["addition_dummy"]) == set("0123456789 +=;\n")
    operands = []
    for line in lines:
        a, b, c = map(int, re.fullmatch(r"(\d+) \+ (\d+) = (\d+);", line).groups())
        assert c == a + b
        operands += [a, b]
    assert min(operands) == 0 and max(operands) == 100                           # inclusive range
    assert abs(sum(operands) / len(operands) - 50) < 1.5
    assert 105_000 < len(full["addition_dummy"]) < 125_000                        # ~115 KB


def test_simple_dummy2_distribution(full):
    text = full["simple_dummy2"]
    lines = text.split("\n")
    assert 49_990 < len(lines) <= 50_000              # only leading 5-8 attempts are skipped
    assert len(set(text)) == 25 and 540_000 < len(text) < 610_000                # ~575 KB
    prev, actions, lengths = None, collections.Counter(), collections.Counter()
    for k, line in enumerate(lines):
        data, action, result = re.fullmatch(r"([a-f]{4,8})(\d)([a-z]*);", line).groups()
        action = int(action)
        if k == 0:
            assert action not in (5, 6, 7, 8)
        assert result == dummy2_result(data, action, prev)
        actions[action] += 1
        lengths[len(data)] += 1
        prev = data
    assert set(actions) == set(range(10)) and min(actions.values()) > 4500       # ~5000 each
    assert set(lengths) == {4, 5, 6, 7, 8} and min(lengths.values()) > 9000      # uniform 4..8


def test_dummy2_result_actions():
    assert [dummy2_result("cabeecf", a, "abcdef") for a in range(10)] == [
        "", "cab", "ecf", "igh", "kil", "abc", "def", "ghi", "jkl", "z"]


def test_simple_sequence_is_the_periodic_string(full):
    text = full["simple_sequence"]
    assert len(text) == 6000 and text.startswith("a@@b##c$$d%%e^^f@@")
    assert text == text[:120] * 50                                                # period lcm(8,5)=40 groups
    assert all(ord(text[i]) - ord(text[i - 3]) in (1, -7) for i in range(3, 6000, 3))  # successor, h->a
    assert file_text("simple_sequence") == text                                  # print(end=""): no newline
    assert generate_text("simple_sequence", seed=1) == generate_text("simple_sequence", seed=2)


def test_simple_sequence2_lines_and_noise(full):
    clean = generate_text("simple_sequence2", noise=False)
    assert clean.split("\n")[:3] == ["adhmmt;", "beinnu;", "cfjoov;"]
    assert len(clean) == 16_000 and len(file_text("simple_sequence2", seed=1)) == 16_001
    assert clean == "".join(sequence2_line(i) for i in range(2000))
    assert len(set(clean.split("\n"))) == 2001                                    # no line repeats (+ "")
    noisy = full["simple_sequence2"]
    changed = [b for a, b in zip(clean, noisy) if a != b]
    assert len(noisy) == len(clean) and 10 <= len(changed) <= 60                  # 0.2% of 16,000 = 32
    assert set(changed) <= set(SEQ2_NOISE_CHARS) and len(SEQ2_NOISE_CHARS) == 64


def test_mask_is_seeded_and_checks_its_rate():
    import random

    text = generate_text("simple_dummy", 200, seed=1)
    assert mask(text, 0.0) == text and set(mask(text, 1.0, "#")) == {"#"}
    a = mask(text, 0.05, rng=random.Random(3))
    assert a == mask(text, 0.05, rng=random.Random(3)) and 0 < a.count("x") < len(text) * 0.1
    with pytest.raises(ValueError, match="rate"):
        mask(text, 1.5)


def script(*args, **kw):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, **kw)


@pytest.mark.parametrize("name", list(TASKS))
def test_scripts_print_the_reference_output(name, tmp_path):
    r = script(SCRIPTS / f"{name}.py", "--seed", 3, "--size", 25, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == file_text(name, 25, 3)
    out = tmp_path / "d.txt"
    assert script(SCRIPTS / f"{name}.py", "--seed", 3, "--size", 25, "--out", out).returncode == 0
    assert out.read_text() == r.stdout


def test_script_defaults_and_bad_flags(tmp_path):
    r = script(SCRIPTS / "simple_sequence.py")
    assert r.returncode == 0 and len(r.stdout) == 3 * TASKS["simple_sequence"].default_size
    r = script(SCRIPTS / "simple_dummy.py", "--size", 0)
    assert r.returncode == 2 and "--size" in r.stderr
    r = script(SCRIPTS / "simple_sequence2.py", "--no-noise", "--size", 3)
    assert r.stdout == "adhmmt;\nbeinnu;\ncfjoov;\n\n"


def test_mask_script(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("abcdefgh" * 100)
    r = script(SCRIPTS / "mask.py", src, "--rate", 0.5, "--seed", 1, "--replacement", "_")
    assert r.returncode == 0 and len(r.stdout) == 800 and 300 < r.stdout.count("_") < 500
    r2 = script(SCRIPTS / "mask.py", "--rate", 0.5, "--seed", 1, "--replacement", "_", input=src.read_text())
    assert r2.stdout == r.stdout
    assert script(SCRIPTS / "mask.py", "--rate", 2, input="x").returncode == 2


@pytest.mark.parametrize("name", list(TASKS))
def test_cli_dummy_data(name, tmp_path):
    from femtogpt.cli import cli

    r = CliRunner().invoke(cli, ["dummy-data", name, "--seed", "5", "--size", "30"])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip("\n") == generate_text(name, 30, 5).rstrip("\n")
