"""Output paths (issue 13): every command that writes a file checks, before any work, that its folder
exists, is a directory and is writable, that the output is not one of its inputs, and that it is not a
dangling symlink unless --force; a write that fails anyway (a full disk) is one line.

Tests run as root, where chmod does not stop writes: an unwritable folder is a path under a regular
file, or os.access monkeypatched; a full disk is RLIMIT_FSIZE in a subprocess.
"""
import os
import resource
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from femtogpt.cli import cli, common
from tests.fixture_paths import FORK_FIXTURES
from tests.run_cli import run, tiny_model_folder

# each command that writes a file, with OUT where its output path goes
WRITERS = {
    "init": ["init", "--model", "OUT"],
    "init-with": ["init-with", "--parent", "model.dat", "--child", "OUT"],
    "insert-layer": ["insert-layer", "--insert-at", "0", "--output", "OUT"],
    "import-fork": ["import-fork", "fork.dat", "OUT"],
    "export": ["export", "--out", "OUT"],
    "train-bpe": ["train-bpe", "--dataset", "dataset.txt", "--vocab-size", "260", "--tokenizer-data", "OUT"],
    "dummy-data": ["dummy-data", "simple_dummy", "--size", "3", "--out", "OUT"],
    "plot": ["plot", "--model", "model.dat", "--out", "OUT"],
    "bench": ["bench", "--config", "tiny", "--steps", "1", "--out", "OUT"],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tiny_model_folder(tmp_path_factory.mktemp("outputs"))
    (d / "afile.txt").write_text("a regular file, not a folder")
    shutil.copy(FORK_FIXTURES / "tiny_abs.dat", d / "fork.dat")
    return d


def snapshot(folder):
    return {p.name: (p.read_bytes() if p.is_file() else None) for p in folder.iterdir()}


def refused(workdir, monkeypatch, args):
    """Run femtogpt ARGS in workdir: one Error: line, exit 1 or 2, no traceback, quickly, nothing written."""
    monkeypatch.chdir(workdir)
    before = snapshot(workdir)
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert isinstance(result.exception, SystemExit) and result.exit_code in (1, 2), (args, result.output)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, (args, result.output)
    assert snapshot(workdir) == before, args
    return errors[0]


def writer(name, out):
    return [out if a == "OUT" else a for a in WRITERS[name]]


@pytest.mark.parametrize("name", sorted(set(WRITERS) - {"bench"}))  # bench creates its folder
def test_output_into_a_missing_folder_is_refused(workdir, monkeypatch, name):
    line = refused(workdir, monkeypatch, writer(name, "missing/out.x"))
    assert line.endswith("missing/out.x: the directory missing does not exist"), line


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_output_under_a_regular_file_is_refused(workdir, monkeypatch, name):
    line = refused(workdir, monkeypatch, writer(name, "afile.txt/out.x"))
    assert "afile.txt" in line and ("not a directory" in line or "cannot create" in line), line


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_output_in_a_read_only_folder_is_refused(workdir, monkeypatch, name):
    real = os.access
    monkeypatch.setattr(common.os, "access", lambda p, mode, **kw: not mode & os.W_OK and real(p, mode, **kw))
    line = refused(workdir, monkeypatch, writer(name, "out.x"))
    assert line.endswith("out.x: the directory . is not writable"), line


@pytest.mark.parametrize("args, message", [
    (["init-with", "--parent", "model.dat", "--child", "model.dat", "--force"],
     "Error: --output model.dat is the --input file itself; choose another name"),
    (["init-with", "--parent", "model.dat", "--child", "alias.dat", "--force"],
     "Error: --output alias.dat is the --input file itself; choose another name"),
    (["export", "--out", "model.dat", "--force"], "Error: --out model.dat is the model file itself; choose another name"),
    (["import-fork", "fork.dat", "fork.dat", "--force"], "Error: OUTPUT fork.dat is the fork file itself; choose another name"),
    (["train-bpe", "--dataset", "dataset.txt", "--tokenizer-data", "dataset.txt"],
     "Error: --tokenizer-data dataset.txt is the --dataset file itself; choose another name"),
    (["plot", "--model", "model.dat", "--out", "model.dat"],
     "Error: --out model.dat is a --model file itself; choose another name"),
    (["init", "--tokenizer", "char", "--tokenizer-data", "dataset.txt", "--model", "dataset.txt", "--force"],
     "Error: --model dataset.txt is the --tokenizer-data file itself; choose another name"),
])
def test_output_equal_to_an_input_is_refused(workdir, monkeypatch, args, message):
    alias = workdir / "alias.dat"
    alias.symlink_to(workdir / "model.dat")
    try:
        assert refused(workdir, monkeypatch, args) == message
    finally:
        alias.unlink()


def test_existing_output_needs_force(workdir, monkeypatch):
    assert refused(workdir, monkeypatch, ["init"]) == \
        "Error: model.dat already exists; pass --force to overwrite it"


def test_dangling_symlink_output_is_refused_without_force(workdir, monkeypatch):
    link = workdir / "link.dat"
    link.symlink_to(workdir / "gone.dat")
    try:
        line = refused(workdir, monkeypatch, ["init", "--model", "link.dat"])
        assert line.startswith("Error: --model link.dat is a symlink to ") and \
            line.endswith("gone.dat, which does not exist; pass --force to write through it"), line
        line = refused(workdir, monkeypatch, writer("bench", "link.dat"))  # no --force there
        assert line.endswith("which does not exist; remove it or choose another name"), line
        run("init", "--model", "link.dat", "--force", "--embedding-degree", 8, "--num-layers", 1,
            "--num-heads", 2, "--num-tokens", 8)
        assert link.is_symlink() and (workdir / "gone.dat").is_file()  # written through the link
    finally:
        link.unlink()
        (workdir / "gone.dat").unlink(missing_ok=True)


def test_output_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(common.UserError, match="is a directory"):
        common.check_output_path(tmp_path / "sub", "--out", force=True)


def test_insert_layer_may_still_write_over_its_input(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    shutil.copy(workdir / "model.dat", workdir / "grow.dat")
    try:
        run("insert-layer", "--input", "grow.dat", "--output", "grow.dat", "--insert-at", 1)
    finally:
        (workdir / "grow.dat").unlink()


def test_train_refuses_a_model_in_a_folder_it_cannot_save_into(workdir, monkeypatch):
    real = os.access
    monkeypatch.setattr(common.os, "access", lambda p, mode, **kw: not mode & os.W_OK and real(p, mode, **kw))
    line = refused(workdir, monkeypatch, ["train", "--steps", 1])
    assert line == "Error: --model model.dat: the directory . is not writable"


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # a disk that holds 1 kB per file (the JSON is ~3 kB)


def test_train_bpe_onto_a_full_disk_is_one_line(tmp_path):
    (tmp_path / "dataset.txt").write_text("hello world, hello femtogpt. " * 200)
    (tmp_path / "tokenizer.json").write_text("the old tokenizer")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "femtogpt", "train-bpe", "--dataset", "dataset.txt",
                           "--vocab-size", "300", "--force"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          preexec_fn=_limit_file_size, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: tokenizer.json: cannot save: file too large for this file system or process limit; "
        "the existing tokenizer.json is unchanged"]
    assert (tmp_path / "tokenizer.json").read_text() == "the old tokenizer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.txt", "tokenizer.json"]  # no temp file


def test_dummy_data_out_goes_through_the_atomic_writer(workdir, monkeypatch):
    from femtogpt import atomic

    def full(path, content):
        raise atomic.AtomicWriteError(f"{path}: cannot save: no space left on device; nothing was written")

    monkeypatch.setattr(atomic, "write_atomically", full)
    line = refused(workdir, monkeypatch, writer("dummy-data", "words.txt"))
    assert line == "Error: words.txt: cannot save: no space left on device; nothing was written"


@pytest.mark.parametrize("args", [["train-bpe", "--dataset", "dataset.txt", "--vocab-size", 300,
                                   "--tokenizer-data", "model.dat"],
                                  ["dummy-data", "simple_dummy", "--out", "model.dat"],
                                  ["plot", "--model", "model.dat", "--out", "model.dat"]])
def test_a_command_without_force_never_replaces_a_model_file(workdir, monkeypatch, args):
    message = refused(workdir, monkeypatch, args)
    assert "model.dat" in message and ("femtogpt model file" in message or "itself" in message
                                       or "already exists; pass --force" in message), message
