"""Every command that reads a model file, on crafted files under 1 MB that ask for huge models: one `Error:`
line, a non-zero exit, no traceback, and never more than 1 GB (each command runs in its own process under
RLIMIT_AS = 1 GB, so an allocation past it fails the test instead of swapping)."""
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hostile_files import crafted, run_limited, set_hp, small_model


def _vocab(e):
    e["hyperparameters"]["vocab_size"] = 2**27
    e["tokenizer_meta"]["vocab_size"] = 2**27


CRAFTED = {  # name: change; each keeps the file valid but for what it names, and re-checksummed
    "layers": set_hp(num_layers=10**7),
    "layers_2_40": set_hp(num_layers=2**40),
    "heads": set_hp(embedding_degree=2**30, num_heads=2**30, head_size=1),
    "vocab": _vocab,
    "shapes": lambda e: [t.update(shape=[2**31, 2**31]) for t in e["tensors"].values()],
}
LONG = set_hp(num_tokens=2**40)  # a valid file whose context no machine holds: only building a model must fail

COMMANDS = {  # every command that reads a model file, as "M" for the model's path
    "info": ["info", "--model", "M"],
    "loss": ["loss", "--model", "M"],
    "train": ["train", "--model", "M", "--dataset", "d.txt", "--steps", "1", "--batch-size", "1", "--quiet"],
    "infer": ["infer", "--model", "M", "--count", "3", "hello"],
    "eval": ["eval", "--model", "M", "--dataset", "d.txt"],
    "reset-optimizer": ["reset-optimizer", "--model", "M"],
    "count-tokens": ["count-tokens", "--model", "M", "--dataset", "d.txt"],
    "compare": ["compare", "M", "base.dat"],
    "export": ["export", "--model", "M", "--out", "w.npz"],
    "insert-layer": ["insert-layer", "--input", "M", "--output", "grown.dat", "--insert-at", "0"],
    "init-with": ["init-with", "--parent", "M", "--child", "child.dat"],
    "score": ["score", "--task", "simple_sequence", "--model", "M"],
}


def run_commands(root, model):
    """In the memory-limited child: every command on `model`, each in its own folder, through Click as the
    `femtogpt` entry point runs it; prints {command: {exit, stdout, stderr, exception}} as JSON."""
    import os
    from pathlib import Path

    from click.testing import CliRunner

    from femtogpt.cli import cli

    results = {}
    for command, args in COMMANDS.items():
        work = Path(root) / f"{Path(model).stem}-{command}"
        work.mkdir()
        shutil.copy(Path(root) / "base.dat", work / "base.dat")
        shutil.copy(model, work / "m.dat")
        (work / "d.txt").write_text("hello world\n" * 50)
        os.chdir(work)
        r = CliRunner().invoke(cli, [a if a != "M" else "m.dat" for a in args])
        escaped = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
        results[command] = {"exit": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "exception": escaped}
    print(json.dumps(results))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("crafted")
    base = small_model(root / "base.dat")
    made = {name: crafted(root / f"{name}.dat", base, change) for name, change in {**CRAFTED, "long": LONG}.items()}
    for path in made.values():
        assert path.stat().st_size < 1_000_000
    return root, made


def _run(root, path):
    code = f"from tests.test_crafted_files_cli import run_commands; run_commands({str(root)!r}, {str(path)!r})"
    result = run_limited(["-c", code], cwd=root, python=True)
    assert result.returncode == 0, result.stderr[-3000:]      # a MemoryError, a crash past the 1 GB limit
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_model_reading_command_fails_in_one_line_within_1_gb_on_crafted_files(files):
    root, made = files
    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(made, pool.map(lambda path: _run(root, path), made.values())))
    problems = []
    for name, commands in results.items():
        for command, r in commands.items():
            lines = r["stderr"].strip().splitlines()
            one_line = r["exit"] != 0 and len(lines) == 1 and lines[0].startswith("Error: ") and not r["stdout"]
            if r["exception"] or not (one_line or name == "long" and r["exit"] == 0):
                problems.append(f"{name} {command}: exit {r['exit']}: {r}")
    assert not problems, "\n".join(problems)
    # the long-context file is a valid file: reading it works, building its model does not
    assert results["long"]["info"]["exit"] == 0 and "context 1099511627776" in results["long"]["info"]["stdout"]
    assert "this model needs" in results["long"]["infer"]["stderr"]


def test_a_crafted_file_fails_in_one_line_in_a_real_process(files, tmp_path):
    # the same through the installed entry point: what reaches a terminal is one line on stderr, exit 1
    root, made = files
    shutil.copy(made["layers"], tmp_path / "m.dat")
    result = run_limited(["info", "--model", "m.dat"], cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == "" and result.stderr == (
        "Error: m.dat: tensors do not match the hyperparameters: num_layers 10000000 and num_heads 2 call for "
        "160,000,005 tensors, the file holds 37\n")


def test_a_crafted_fork_file_fails_in_one_line_within_1_gb(tmp_path):
    import dataclasses

    from femtogpt.io.fork_reader import read_fork_model
    from tests.fixture_paths import FORK_FIXTURES
    from tests.test_fork_import import encode

    fork = read_fork_model(FORK_FIXTURES / "tiny_inserted.dat")
    for hp in ({"num_layers": 10**7}, {"vocab_size": 2**27}, {"num_tokens": 2**40}):
        (tmp_path / "fork.dat").write_bytes(encode(dataclasses.replace(
            fork, hyperparameters={**fork.hyperparameters, **hp})))
        result = run_limited(["import-fork", "fork.dat", "out.dat"], cwd=tmp_path)
        assert result.returncode == 1 and result.stdout == "" and len(result.stderr.splitlines()) == 1 \
            and result.stderr.startswith("Error: fork.dat: "), result.stderr
        assert not (tmp_path / "out.dat").exists()
