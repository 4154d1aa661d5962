"""Bad flags (issue 13): every numeric option of every command refuses NaN, infinities, values far above
its bound and negative values where they make no sense, with one `Error:` line and no traceback, before
any work; model and batch sizes are checked against memory before anything is built; --threads is
capped at the usable CPUs; negative seeds are refused everywhere; --min-lr stays at most --lr.

The property tests walk `femtogpt.cli.cli.commands` and their parameters, so a new command or option is
held to the same rules without editing this file (only BASE_ARGS, if it needs arguments to get going).
"""
import os
import tracemalloc

import click
import pytest
from click.testing import CliRunner

from femtogpt.cli import cli, flags
from tests.run_cli import run, tiny_model_folder

# what each command needs besides the option under test to get past its own argument checks
BASE_ARGS = {
    "compare": ["model.dat", "model.dat"], "count-tokens": ["--model", "model.dat"],
    "dummy-data": ["simple_dummy"], "eval": ["--dataset", "dataset.txt"], "export": ["--out", "x.npz"],
    "grow": ["--to-layers", "2", "--steps-per-stage", "1"],
    "import-fork": ["fork.dat", "out.dat"], "init": ["--model", "new.dat"],
    "init-with": ["--parent", "model.dat", "--child", "child.dat"], "insert-layer": ["--insert-at", "0"],
    "plot": ["--model", "model.dat"], "score": ["--task", "simple_dummy"],
    "train-bpe": ["--dataset", "dataset.txt"],
}
# options with no upper bound in their type, and what stops a huge value instead
CHECKED_IN_BODY = {
    ("init", "--num-tokens"): "memory", ("init", "--embedding-degree"): "memory",
    ("init", "--num-layers"): "memory", ("init", "--num-heads"): "must divide --embedding-degree",
    ("init-with", "--num-tokens"): "memory", ("train", "--batch-size"): "memory",
    ("grow", "--batch-size"): "memory", ("grow", "--to-layers"): "memory",
    ("insert-layer", "--insert-at"): "at most the file's layer count",
    ("insert-head", "--layer"): "a layer of the file (and refused anyway: heads go into every layer)",
    ("cluster-tokens", "--head"): "a head of the model", ("chunks", "--chunk-size"): "at most num_tokens + 1",
}
HARMLESS_WHEN_HUGE = {  # any value is fine: nothing is allocated by it
    ("eval", "--batch-size"): "a batch holds at most the dataset's windows",
    ("train", "--threads"): "capped at the usable CPUs (test below)",
    ("grow", "--threads"): "capped at the usable CPUs (as train's)",
    ("bench", "--threads"): "capped at the usable CPUs (test below)",
    ("inspect", "--threads"): "capped at the usable CPUs (test below)",
}
PEAK_BYTES = 200e6  # a refused flag never gets to build its model or data


def numeric_options():
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield name, param


OPTIONS = [pytest.param(name, param, id=f"{name} {param.opts[0]}") for name, param in numeric_options()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a tiny model.dat and dataset.txt, so that commands get as far as their checks."""
    return tiny_model_folder(tmp_path_factory.mktemp("flags"))


def refused(workdir, monkeypatch, *args):
    """Run femtogpt ARGS in workdir; assert a clean refusal: exit 1 or 2, one Error: line, no traceback,
    quickly, and no file written. Returns the Error line."""
    monkeypatch.chdir(workdir)
    before = sorted(p.name for p in workdir.iterdir())
    tracemalloc.start()  # NumPy reports its arrays here: a refused size must allocate nothing big
    try:
        result = CliRunner().invoke(cli, [str(a) for a in args])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(result.exception, SystemExit), (args, result.output, result.exception)
    assert result.exit_code in (1, 2), (args, result.output)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, (args, result.output)
    assert peak < PEAK_BYTES, (args, peak)
    assert sorted(p.name for p in workdir.iterdir()) == before, args
    return errors[0]


def bounds(param):
    t = param.type
    return getattr(t, "min", None), getattr(t, "max", None)


def test_every_numeric_option_has_a_finite_type_and_an_upper_bound_or_a_check():
    unbounded = []
    for name, param in numeric_options():
        key = (name, param.opts[0])
        if isinstance(param.type, click.types.FloatParamType):
            assert isinstance(param.type, flags.FiniteFloat), key  # click's own FloatRange passes nan
        if bounds(param)[1] is None and key not in CHECKED_IN_BODY and key not in HARMLESS_WHEN_HUGE:
            unbounded.append(key)
        if param.opts[0] == "--seed":
            assert isinstance(param.type, flags.SeedType), key
        if param.opts[0] == "--threads":
            assert isinstance(param.type, flags.ThreadCount), key
    assert not unbounded, unbounded


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999"])
@pytest.mark.parametrize("name, param", OPTIONS)
def test_nan_and_infinities_are_refused(workdir, monkeypatch, name, param, value):
    line = refused(workdir, monkeypatch, name, *BASE_ARGS.get(name, []), param.opts[0], value)
    assert param.opts[0] in line


@pytest.mark.parametrize("name, param", OPTIONS)
def test_values_far_above_the_bound_are_refused(workdir, monkeypatch, name, param):
    key = (name, param.opts[0])
    if key in HARMLESS_WHEN_HUGE:
        pytest.skip(HARMLESS_WHEN_HUGE[key])
    top = bounds(param)[1]
    value = 10**15 if top is None else top * 10 + 1
    refused(workdir, monkeypatch, name, *BASE_ARGS.get(name, []), param.opts[0], value)


@pytest.mark.parametrize("name, param", OPTIONS)
def test_negative_values_are_refused_where_they_make_no_sense(workdir, monkeypatch, name, param):
    low = bounds(param)[0]
    if low is None or low < 0:
        pytest.skip("negative values are allowed")
    refused(workdir, monkeypatch, name, *BASE_ARGS.get(name, []), param.opts[0], -1)


@pytest.mark.parametrize("name", sorted(n for n, c in cli.commands.items()
                                        if any(p.opts[0] == "--seed" for p in c.params)))
def test_negative_seeds_are_refused_by_every_command(workdir, monkeypatch, name):
    line = refused(workdir, monkeypatch, name, *BASE_ARGS.get(name, []), "--seed", "-1")
    assert "negative seeds are refused" in line


def test_seeds_up_to_2_63_work(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    out = run("infer", "he", "--count", 3, "--seed", 2**63 - 1).output
    assert out.startswith("he")
    refused(workdir, monkeypatch, "infer", "--seed", 2**63)


def test_a_temperature_too_small_to_divide_by_is_refused(workdir, monkeypatch):
    line = refused(workdir, monkeypatch, "infer", "--temperature", "1e-300")
    assert "use 0 for greedy" in line
    monkeypatch.chdir(workdir)
    assert run("infer", "he", "--count", 2, "--temperature", 0).exit_code == 0


def test_huge_model_sizes_are_refused_by_the_memory_check_before_anything_is_built(workdir, monkeypatch):
    for flag in ("--num-tokens", "--embedding-degree", "--num-layers"):
        line = refused(workdir, monkeypatch, "init", "--model", "new.dat", flag, 2**40)
        assert "needs" in line and "this machine has" in line, line
    line = refused(workdir, monkeypatch, "init-with", "--parent", "model.dat", "--child", "child.dat",
                   "--num-tokens", 2**40)
    assert "needs" in line, line
    line = refused(workdir, monkeypatch, "train", "--batch-size", 10**12)
    assert line.startswith("Error: --batch-size 1000000000000: training model.dat needs") and \
        line.endswith("try a smaller --batch-size"), line


def test_a_model_that_does_not_fit_is_refused_by_every_command_that_builds_or_runs_one(workdir, monkeypatch):
    from femtogpt.model import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000)  # a machine with 10 kB free
    for args in (["init", "--model", "new.dat", "--num-layers", 1, "--embedding-degree", 8, "--num-heads", 2],
                 ["insert-layer", "--insert-at", 0, "--output", "grown.dat"],
                 ["init-with", "--parent", "model.dat", "--child", "child.dat"],
                 ["train", "--steps", 1], ["eval", "--dataset", "dataset.txt", "--batch-size", 4]):
        line = refused(workdir, monkeypatch, *args)
        assert " needs " in line and "; this machine has 0 MB available" in line, line


def test_training_at_the_default_batch_that_would_not_fit_is_a_note(workdir, monkeypatch):
    from femtogpt.model import memory

    monkeypatch.chdir(workdir)
    hp_bytes = {}
    real = memory.training_bytes

    def spy(hp, batch_size, **kw):
        hp_bytes[batch_size] = real(hp, batch_size, **kw)
        return hp_bytes[batch_size]

    monkeypatch.setattr(memory, "training_bytes", spy)
    monkeypatch.setattr(memory, "available_bytes", lambda: int(2 * real(_tiny_hp(), 1)))
    result = run("init", "--model", "noted.dat", "--num-layers", 1, "--embedding-degree", 8, "--num-heads", 2,
                 "--num-tokens", 8, "--force")
    assert "note: training this model at --batch-size 32 needs" in result.output
    os.remove(workdir / "noted.dat")


def _tiny_hp():
    from femtogpt.config import Hyperparameters

    return Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=8, num_layers=1, num_heads=2)


def test_threads_beyond_the_usable_cpus_are_capped_with_a_note(workdir, monkeypatch):
    monkeypatch.setattr(flags, "usable_cpus", lambda: 1)
    assert flags.THREADS.convert("100000", None, None) == 1
    assert flags.THREADS.convert("1", None, None) == 1
    monkeypatch.chdir(workdir)
    before = (workdir / "model.dat").read_bytes()
    result = run("train", "--threads", 100000, "--steps", 1, "--batch-size", 2, "--quiet")
    assert "note: --threads 100000: this process may run on 1 CPU; using 1" in result.output
    assert "; 1 threads" in result.output
    (workdir / "model.dat").write_bytes(before)  # the module's model stays at step 0
    refused(workdir, monkeypatch, "train", "--threads", 0)


def test_usable_cpus_is_the_affinity_mask():
    assert flags.usable_cpus() == len(os.sched_getaffinity(0))


def test_min_lr_above_lr_is_refused_or_lowered_when_defaulted(workdir, monkeypatch):
    line = refused(workdir, monkeypatch, "train", "--lr", "1e-3", "--min-lr", "1e-2")
    assert line == "Error: --min-lr 0.01 is above --lr 0.001: the floor must not exceed the peak"
    from femtogpt.io.checkpoint import Checkpoint

    configs, real = [], Checkpoint.ensure_optimizer
    monkeypatch.setattr(Checkpoint, "ensure_optimizer",
                        lambda self, config=None: configs.append(config) or real(self, config))
    monkeypatch.chdir(workdir)
    before = (workdir / "model.dat").read_bytes()
    result = run("train", "--lr", "1e-6", "--steps", 1, "--batch-size", 2, "--quiet")
    (workdir / "model.dat").write_bytes(before)
    assert "note: --min-lr lowered to --lr 1e-06" in result.output
    config = next(c for c in configs if c is not None)
    assert (config.lr, config.min_lr) == (1e-6, 1e-6)


def test_finite_float_keeps_the_range_and_its_open_ends():
    t = flags.FiniteFloat(0.0, 1.0, max_open=True)
    assert t.convert("0.5", None, None) == 0.5
    for bad in ("1.0", "nan", "-0.1", "inf"):
        with pytest.raises(click.BadParameter):
            t.convert(bad, None, None)
