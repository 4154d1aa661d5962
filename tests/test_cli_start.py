"""Start-up and the runtime: `femtogpt --help` imports no engine; engine_threads() sets Numba's and
BLAS's threads inside it and gives them back; kernels are cached outside the package, by fingerprint,
and a second process loads them instead of compiling; training runs BLAS on one thread whatever
OPENBLAS_NUM_THREADS says."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import pytest
from threadpoolctl import threadpool_info

import femtogpt
from femtogpt.engine.runtime import engine_threads, kernel_cache_dir, kernel_fingerprint, physical_cores


def _clean_env(**extra):
    """os.environ without the variables that set BLAS threads or the kernel cache, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def _python_json(code, env, *args):
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def test_help_of_every_command_imports_no_engine():
    code = (
        "import sys; from click.testing import CliRunner; from femtogpt.cli import cli;"
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output;"
        "assert 'femtogpt' in r.output;"
        "names = sorted(cli.commands); assert len(names) > 10, names;"
        "bad = [n for n in names if CliRunner().invoke(cli, [n, '--help']).exit_code != 0]; assert not bad, bad;"
        "heavy = [m for m in ('numba', 'numpy', 'femtogpt.engine.ops', 'femtogpt.model.gpt') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_physical_cores_counts_hyperthread_siblings_once(tmp_path):
    # 4 logical CPUs on 2 cores: cpu0/cpu2 and cpu1/cpu3 are siblings
    for cpu, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(siblings + "\n")
    assert physical_cores({0, 1, 2, 3}, sysfs=tmp_path) == 2
    assert physical_cores({0, 2}, sysfs=tmp_path) == 1  # an affinity mask of one core's two threads
    assert physical_cores({0, 7}, sysfs=tmp_path) is None  # no topology for cpu7: unknown


def test_kernel_cache_directory_follows_the_kernel_sources(tmp_path):
    package = Path(femtogpt.__file__).parent
    copy = tmp_path / "femtogpt"
    shutil.copytree(package / "engine" / "ops", copy / "engine" / "ops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(package / "engine" / "optim.py", copy / "engine" / "optim.py")
    before = kernel_fingerprint(str(copy))
    assert before == kernel_fingerprint()
    with open(copy / "engine" / "ops" / "fastmath.py", "a") as f:  # a helper other kernels inline
        f.write("\n# edited\n")
    assert kernel_fingerprint(str(copy)) != before
    cache = tmp_path / "cache"
    assert kernel_cache_dir({"XDG_CACHE_HOME": str(cache)}) == str(cache / "femtogpt" / "numba" / before)
    assert kernel_cache_dir({"HOME": str(tmp_path)}).startswith(os.path.expanduser("~"))
    assert kernel_cache_dir({"NUMBA_CACHE_DIR": "/x", "XDG_CACHE_HOME": str(cache)}) == "/x"  # the user's, as is


_CACHED_KERNEL = """
import json
import numba
import numpy as np
config_before = numba.config.CACHE_DIR
from femtogpt.engine.ops import reduce          # no engine_threads(): a plain library user
x = np.zeros(3)
reduce.add_into(x, x)
stats = reduce.add_into.stats
print(json.dumps({"path": stats.cache_path, "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values()),
                  "config_kept": numba.config.CACHE_DIR == config_before}))
"""


def test_a_second_process_loads_kernels_from_the_user_cache(tmp_path):
    env = _clean_env(XDG_CACHE_HOME=tmp_path)
    expected = tmp_path / "femtogpt" / "numba" / kernel_fingerprint()
    first = _python_json(_CACHED_KERNEL, env)
    second = _python_json(_CACHED_KERNEL, env)
    for run in (first, second):
        assert Path(run["path"]).is_relative_to(expected), run  # never in the package
        assert run["config_kept"], run                           # Numba's configuration left as it was
    assert (first["hits"], first["misses"]) == (0, 1)  # compiled and saved
    assert (second["hits"], second["misses"]) == (1, 0)  # loaded, not compiled


def test_engine_threads_sets_and_gives_back_numba_and_blas_threads():
    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    outer_numba, outer_blas = numba.get_num_threads(), blas()
    with engine_threads(1):
        assert numba.get_num_threads() == 1
        assert set(blas()) == {1}
        with engine_threads(10_000):  # more than Numba's pool: the whole pool
            assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
        assert numba.get_num_threads() == 1
    assert (numba.get_num_threads(), blas()) == (outer_numba, outer_blas)


_BLAS_DURING_TRAINING = """
import json, sys
import numpy
from threadpoolctl import threadpool_info
from femtogpt.cli import cli
from femtogpt.engine.ops import matmul

def blas():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

seen, real = [], matmul.gemm
def spy(a, b, out):
    if len(seen) < 5:  # the threads of the batch's units may both get here
        seen.append(blas())
    return real(a, b, out)
matmul.gemm = spy
before = blas()
model, data = sys.argv[1], sys.argv[2]
cli.main(["init", "--model", model, "--embedding-degree", "8", "--num-layers", "1", "--num-heads", "2",
          "--num-tokens", "8", "--seed", "1"], standalone_mode=False)
cli.main(["train", "--model", model, "--dataset", data, "--steps", "2", "--batch-size", "2", "--quiet"],
         standalone_mode=False)
print(json.dumps({"before": before, "during": seen, "after": blas()}))
"""


def test_training_runs_blas_on_one_thread_whatever_the_environment_says(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("hello world, hello femtogpt. " * 40)
    env = _clean_env(OPENBLAS_NUM_THREADS=2)
    if "NUMBA_CACHE_DIR" in os.environ:
        env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]  # the session's kernels: no compiling again
    run = _python_json(_BLAS_DURING_TRAINING, env, tmp_path / "m.dat", data)
    if not run["before"]:
        pytest.skip("threadpoolctl finds no BLAS in NumPy here")
    assert run["before"] == run["after"] == [2]  # the environment's setting, given back after the command
    assert len(run["during"]) >= 5 and all(threads == [1] for threads in run["during"]), run
