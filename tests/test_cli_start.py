"""The CLI starts without importing the engine: `femtogpt --help` stays instant."""
import subprocess
import sys


def test_help_imports_no_engine():
    code = (
        "import sys; from click.testing import CliRunner; from femtogpt.cli import cli;"
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output;"
        "assert 'femtogpt' in r.output;"
        "heavy = [m for m in ('numba', 'numpy', 'femtogpt.engine.ops', 'femtogpt.model.gpt') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_physical_cores_counts_hyperthread_siblings_once(tmp_path):
    from femtogpt import physical_cores

    # 4 logical CPUs on 2 cores: cpu0/cpu2 and cpu1/cpu3 are siblings
    for cpu, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(siblings + "\n")
    assert physical_cores({0, 1, 2, 3}, sysfs=tmp_path) == 2
    assert physical_cores({0, 2}, sysfs=tmp_path) == 1  # an affinity mask of one core's two threads
    assert physical_cores({0, 7}, sysfs=tmp_path) is None  # no topology for cpu7: unknown


def test_kernel_cache_directory_follows_the_kernel_sources(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import femtogpt
    from femtogpt import kernel_fingerprint

    package = Path(femtogpt.__file__).parent
    copy = tmp_path / "femtogpt"
    shutil.copytree(package / "engine" / "ops", copy / "engine" / "ops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(package / "engine" / "optim.py", copy / "engine" / "optim.py")
    before = kernel_fingerprint(str(copy))
    assert before == kernel_fingerprint(str(package))
    with open(copy / "engine" / "ops" / "fastmath.py", "a") as f:  # a helper other kernels inline
        f.write("\n# edited\n")
    assert kernel_fingerprint(str(copy)) != before
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", "import femtogpt, os; print(os.environ['NUMBA_CACHE_DIR'])"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out).name == before and "numba" in Path(out).parts


def test_blas_is_single_threaded_even_when_numpy_came_first():
    import os
    import subprocess
    import sys

    code = ("import numpy\n"
            "from femtogpt.engine.blas import blas_threads\n"
            "before = blas_threads()\n"
            "import femtogpt.engine.ops.matmul\n"
            "print(before, blas_threads())\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["OMP_NUM_THREADS"] = "2"  # OpenBLAS would otherwise start with one thread per core
    before, after = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout.split()
    if after == "None":
        import pytest

        pytest.skip("no OpenBLAS found among the loaded libraries (not Linux, or another BLAS)")
    assert (before, after) == ("2", "1")


def test_openblas_paths_with_spaces():
    from femtogpt.engine.blas import openblas_paths

    lines = [
        "7f00-7f10 r-xp 00000000 08:01 123 /home/u/My Projects/.venv/numpy.libs/libscipy_openblas64_-x.so\n",
        "7f10-7f20 r--p 00010000 08:01 123 /home/u/My Projects/.venv/numpy.libs/libscipy_openblas64_-x.so\n",
        "7f20-7f30 rw-p 00000000 00:00 0 \n",
        "7f30-7f40 r-xp 00000000 08:01 9 /usr/lib/libopenblas.so.0 (deleted)\n",
        "7f40-7f50 r-xp 00000000 08:01 7 /usr/lib/libc.so.6\n",
    ]
    assert openblas_paths(lines) == ["/home/u/My Projects/.venv/numpy.libs/libscipy_openblas64_-x.so",
                                     "/usr/lib/libopenblas.so.0"]
