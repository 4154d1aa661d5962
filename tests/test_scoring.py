"""Task scores: the judges on hand-made correct and incorrect generations, the probes against the
reference eval and log, the runner with an oracle in place of the model, and `score` / `plot`
through the CLI on a tiny trained model."""
import contextlib
import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from femtogpt.tasks import scoring
from femtogpt.cli import cli
from femtogpt.tasks.toy_data import dummy2_result, generate_text
from femtogpt.tasks.probes import (check_dummy_word, dummy2_probes, dummy2_table, judge_addition,
                                   judge_sequence, judge_sequence2, score_dummy_text, sequence2_next,
                                   sequence_continuation, sequence_probes, task_probes)


# simple_dummy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("word, reason", [
    ("feco", None), ("jakogi", None), ("bodi", None),
    ("abed", "start"), ("fecf", "alternation"), ("fefo", "repeat"), ("fec", "length"),
    ("fecodahi", "length"), ("feCo", "charset"), ("", "charset"), ("fecoda", None),
])
def test_check_dummy_word(word, reason):
    assert check_dummy_word(word) == reason


def test_score_dummy_text_counts_complete_lines_only():
    text = "feco;\njakogi;\nfecf;\nfeco\n\nbodi;\nkab"  # "kab" is unfinished: ignored
    r = score_dummy_text(text)
    assert (r["lines"], r["valid"]) == (6, 3) and r["fraction"] == 0.5
    assert r["invalid_reasons"] == {"alternation": 1, "terminator": 2}
    assert (r["length4"], r["length6"], r["unique"]) == (2, 1, 3)
    assert score_dummy_text(generate_text("simple_dummy", 300, seed=4))["fraction"] == 1.0
    assert score_dummy_text("")["fraction"] == 0.0


def test_start_rule_is_reported():
    assert score_dummy_text("feco;\nfobi;\n")["start_rule"] == 0.5  # f again right after f


# simple_dummy2 -----------------------------------------------------------------------------------
def test_dummy2_probes_follow_the_reference_eval():
    lines = ["abcd0;", "bcde9z;", "cdef1cde;", "defa2efa;", "eeee5def;", "ffffaa4kgg;"]
    probes = dummy2_probes("\n".join(lines), 10)
    assert len(probes) == 2                                   # from the 5th line: > 3 previous lines
    assert probes[0] == {"prompt": "\n".join(lines[:4]) + "\neeee5", "expected": "def;\n", "action": 5}
    assert probes[1]["prompt"] == "\n".join(lines[:5]) + "\nffffaa4"
    long = [f"abcdef{i % 10}" + dummy2_result("abcdef", i % 10, "abcdef") + ";" for i in range(30)]
    for p in dummy2_probes("\n".join(long), 20):
        assert len(p["prompt"]) <= 60 and p["prompt"].count("\n") <= 10  # last 60 chars, <= 10 lines
    with pytest.raises(ValueError, match="not a simple_dummy2 line"):
        dummy2_probes("abcd0;\nnonsense", 5)


def test_dummy2_table_on_hand_made_generations():
    probes = dummy2_probes(generate_text("simple_dummy2", 300, seed=2), 200)
    # a model that solves only the actions needing no copy, like every model in the fork's log
    results = [{**p, "correct": (p["expected"] if p["action"] in (0, 9) else "zzz;\n") == p["expected"]}
               for p in probes]
    table = dummy2_table(results)
    assert sum(row["total"] for row in table.values()) == 200
    assert all(table[a]["accuracy"] == (1.0 if a in (0, 9) else 0.0) for a in range(10))
    score, details = scoring.summarize("simple_dummy2", results)
    assert score == pytest.approx(0.2) and details["actions_over_70"] == 2


# addition ----------------------------------------------------------------------------------------
def test_addition_judge_and_the_forks_regex():
    assert judge_addition("42;", "42;\n13 + ") == {"correct": True, "well_formed": True}
    assert judge_addition("42;", "41;\n") == {"correct": False, "well_formed": True}
    assert judge_addition("42;", "4 2;") == {"correct": False, "well_formed": False}
    assert judge_addition("42;", "420;") == {"correct": False, "well_formed": True}
    # the fork's success regex cannot match a correct line: no space allowed after + or =
    assert re.match(r"\d+\s?\+\d+\s?\=\d+\;\n", "13 + 29 = 42;\n") is None
    probes, log = task_probes("addition_dummy", 5, 0)
    assert log == [{"prompt": "13 + 29 = ", "expected": "42;"}]
    for p in probes:
        a, b = map(int, re.search(r"(\d+) \+ (\d+) = $", p["prompt"]).groups())
        assert p["expected"] == f"{a + b};" and p["prompt"].count("\n") == 3


# simple_sequence ---------------------------------------------------------------------------------
def test_sequence_answers_match_the_log_and_wrap():
    assert sequence_continuation("c%%d") == "^^e@@f##g$$h%%"
    assert sequence_continuation("a$$b") == "%%c^^d@@e##f$$"
    assert sequence_continuation("d%%e") == "^^f@@g##h$$a%%"   # log.md misprints ...h$$i%%
    assert len(sequence_probes()) == 40 and len({p["prompt"] for p in sequence_probes()}) == 40
    with pytest.raises(ValueError):
        sequence_continuation("a@@a")


def test_judge_sequence_letters_and_delimiters():
    expected = "^^f@@g##h$$a%%"
    assert judge_sequence(expected, expected)["correct"]
    typo = judge_sequence(expected, "^^f@@g##h$$i%%")         # the log's misprint is wrong here
    assert not typo["correct"] and typo["letters"] == 0.75 and typo["delimiters"] == 1.0
    delims_only = judge_sequence(expected, "^^a@@a##a$$b%%")   # what from-scratch models did (#42)
    assert delims_only["delimiters"] == 1.0 and delims_only["letters"] == 0.0
    assert not delims_only["next_letter"]
    short = judge_sequence(expected, "^^f")
    assert short["letters"] == 0.25 and short["next_letter"] and not short["correct"]


# simple_sequence2 --------------------------------------------------------------------------------
def test_sequence2_answers_match_the_log():
    assert sequence2_next("beloot;") == "cfhppu;\nagiqqv;\n"
    assert sequence2_next("agissy;\n") == "bdjmmz;\nceknn0;\n"
    assert sequence2_next("cfkqqt;") == "aglrru;\nbdhssv;\n"
    with pytest.raises(ValueError):
        sequence2_next("aaaaaa;")


def test_sequence2_probes_are_held_out():
    train = set(generate_text("simple_sequence2", noise=False).split("\n"))
    probes, _ = task_probes("simple_sequence2", 50, 0)
    assert len(probes) == 50 and all(p["prompt"].rstrip("\n") not in train for p in probes)
    assert task_probes("simple_sequence2", 50, 0)[0] == probes            # seeded
    assert task_probes("simple_sequence2", 50, 1)[0] != probes


def test_judge_sequence2():
    exp = "cfhppu;\nagiqqv;\n"
    assert judge_sequence2(exp, exp)["both"]
    r = judge_sequence2(exp, "cfhppu;\nagiqqw;\n")
    assert r["correct"] and not r["line2"] and r["columns"]["c11"] == 0.5 and r["columns"]["c7"] == 1.0
    r = judge_sequence2(exp, "afhppu;\n")
    assert not r["correct"] and r["columns"]["c3"] == 0.0 and r["columns"]["c4"] == 0.5


# the runner with an oracle model -----------------------------------------------------------------
def oracle_answer(task, prompt, wrong=False):
    if task == "simple_dummy2":
        lines = prompt.split("\n")
        data, action = lines[-1][:-1], int(lines[-1][-1])
        prev = re.match(r"[a-f]+", lines[-2]).group() if len(lines) > 1 else None
        if wrong and action not in (0, 9):
            return "zzz;\n"
        return dummy2_result(data, action, prev) + ";\n"
    if task == "addition_dummy":
        a, b = map(int, re.search(r"(\d+) \+ (\d+) = $", prompt).groups())
        return f"{a + b + wrong};\n"
    if task == "simple_sequence":
        cont = sequence_continuation(prompt, 20)
        return cont.replace("a", "i") if wrong else cont
    return sequence2_next(prompt.split("\n")[-2], 3)[1 if wrong else 0:]


@pytest.fixture
def ascii_tok():
    from femtogpt.text.build import build_tokenizer

    return build_tokenizer("ascii")


@pytest.mark.parametrize("task", ["simple_dummy2", "addition_dummy", "simple_sequence", "simple_sequence2"])
@pytest.mark.parametrize("wrong", [False, True])
def test_run_task_with_an_oracle(task, wrong, ascii_tok, monkeypatch):
    import femtogpt.model.generate

    def fake_generate(model, prompt_ids, count, **kw):
        return list(ascii_tok.encode(oracle_answer(task, ascii_tok.decode(prompt_ids), wrong)))[:count]

    monkeypatch.setattr(femtogpt.model.generate, "generate", fake_generate)
    r = scoring.run_task(None, ascii_tok, task, samples=30, seed=1)
    assert r["task"] == task and r["temperature"] == 0.0 and len(r["examples"]) == 5
    if not wrong:
        assert r["score"] == 1.0 and all(p["correct"] for p in r["log_prompts"])
    elif task == "simple_dummy2":
        assert r["score"] == pytest.approx(0.2)  # only actions 0 and 9
    elif task == "simple_sequence":
        assert r["score"] < 1.0 and r["details"]["delimiters"] == 1.0 and r["details"]["letters"] < 1.0
    else:
        assert r["score"] == 0.0


# the commands on a tiny trained model ------------------------------------------------------------
def run(*args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    (d / "d2.txt").write_text(generate_text("simple_dummy2", 2000, seed=1))
    model = d / "m.dat"
    run("init", "--model", model, "--num-tokens", "16", "--embedding-degree", "16", "--num-layers", "1",
        "--num-heads", "2", "--seed", "1", "--positional-encoding", "none")
    run("train", "--model", model, "--dataset", d / "d2.txt", "--steps", "12", "--batch-size", "4",
        "--val-fraction", "0.2", "--eval-every", "4", "--save-every", "0")
    return model


def test_score_command_json(tiny_model):
    out = json.loads(run("score", "--task", "simple_dummy2", "--model", tiny_model, "--samples", "20",
                         "--json").output)
    assert out["model"] == str(tiny_model) and out["samples"] == 20
    actions = out["details"]["actions"]
    assert sorted(actions) == [str(a) for a in range(10)]
    assert sum(row["total"] for row in actions.values()) == 20
    assert 0.0 <= out["score"] <= 1.0 and out["seconds"] < 30
    again = json.loads(run("score", "--task", "simple_dummy2", "--model", tiny_model, "--samples", "20",
                           "--json").output)
    assert again["details"] == out["details"]                               # greedy: deterministic
    words = json.loads(run("score", "--task", "simple_dummy", "--model", tiny_model, "--samples", "10",
                           "--seed", "3", "--json").output)
    assert words["temperature"] == 1.0 and 0.0 <= words["score"] <= 1.0


def test_score_command_text_and_errors(tiny_model, tmp_path):
    out = run("score", "--task", "simple_sequence", "--model", tiny_model).output
    assert "log prompt 'd%%e'" in out and "^^f@@g##h$$a%%" in out and "score (" in out
    out = run("score", "--task", "simple_dummy2", "--model", tiny_model, "--samples", "10").output
    assert "action" in out and "actions above 70%" in out
    bad = run("score", "--task", "simple_dummy2", "--model", tmp_path / "none.dat", ok=False)
    assert bad.exit_code == 1 and bad.output.strip().splitlines()[-1].startswith("Error: ")


def test_plot_command(tiny_model, tmp_path):
    out = tmp_path / "loss.png"
    r = run("plot", "--model", tiny_model, "--model", tiny_model, "--out", out, "--smooth", "3")
    assert "24 steps" in r.output and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "e.dat"
    run("init", "--model", empty, "--num-tokens", "8", "--embedding-degree", "8", "--num-layers", "1",
        "--num-heads", "2")
    r = run("plot", "--model", empty, "--out", tmp_path / "e.png", ok=False)
    assert r.exit_code == 1 and "no training steps" in r.output


def test_plot_unsupported_out_format_names_out_not_the_model(tiny_model, tmp_path):
    # an --out extension matplotlib cannot write is a fault of --out, not of the model file
    r = run("plot", "--model", tiny_model, "--out", tmp_path / "loss.txt", ok=False)
    last = r.output.strip().splitlines()[-1]
    assert r.exit_code == 1 and last.startswith("Error: --out ") and "'txt' is not supported" in last
    assert str(tiny_model) not in last and not (tmp_path / "loss.txt").exists()


def test_plot_without_matplotlib(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    r = run("plot", "--model", tiny_model, "--out", tmp_path / "x.png", ok=False)
    assert r.exit_code == 1 and "femtogpt[plot]" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.png").exists()


def test_curves_from_logs_continue_across_insertions():
    from femtogpt.tools.plotting import curves_from_logs, smooth

    logs = [{"kind": "TrainStep", "loss": 3.0, "step": 1}, {"kind": "Eval", "val_loss": 2.9, "step": 1},
            {"kind": "InsertLayer", "index": 2}, {"kind": "TrainStep", "loss": 2.5, "step": 1}]
    c = curves_from_logs(logs)
    assert c["train"] == ([1, 2], [3.0, 2.5]) and c["val"] == ([1], [2.9])
    assert c["events"] == [(1, "insert@2")]
    assert smooth([1.0, 3.0, 5.0], 2) == [1.0, 2.0, 4.0]


def test_help_lists_score_and_plot_without_numpy():
    import subprocess

    code = ("import sys; from click.testing import CliRunner; from femtogpt.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert 'score' in r.output and 'plot' in r.output; "
            "assert 'numpy' not in sys.modules and 'matplotlib' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent).returncode == 0


def test_every_task_table_is_keyed_by_the_one_list_of_tasks():
    from femtogpt.tasks.probes import JUDGES, LOG_PROMPTS
    from femtogpt.tasks.toy_data import TASKS

    assert set(JUDGES) == set(TASKS) - {"simple_dummy"}     # simple_dummy is judged as open text
    assert set(LOG_PROMPTS) <= set(TASKS)
    for name in TASKS:
        with pytest.raises(ValueError) if name == "simple_dummy" else contextlib.nullcontext():
            task_probes(name, 3, 0)


def test_two_model_files_of_one_name_get_distinct_labels(tmp_path):
    from femtogpt.tools.plotting import distinct_labels

    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "b").mkdir()
    a, b, c = tmp_path / "runs" / "a" / "model.dat", tmp_path / "runs" / "b" / "model.dat", tmp_path / "x.dat"
    assert distinct_labels([a, b, c]) == ["a/model.dat", "b/model.dat", "x.dat"]
    assert distinct_labels([c, tmp_path / "y.dat"]) == ["x.dat", "y.dat"]
