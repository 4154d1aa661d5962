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
SCRIPTS = {
    "e1_simple_dummy": ["e1_simple_dummy"],
    "e2_posenc": ["e2_posenc_simple_sequence", "e2_posenc_simple_dummy2"],
    "e3_dummy2_actions": ["e3_dummy2_actions"],
    "e4_sequences_initwith": ["e4_sequences_initwith"],
    "e5_growth": ["e5_growth"],
}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_experiment_smoke(script, tmp_path):
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}  # tiny models: one thread is fastest, and fair to neighbours
    r = subprocess.run([sys.executable, str(EXPERIMENTS / f"{script}.py"), "--smoke", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    for name in SCRIPTS[script]:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["smoke"] is True and data["wall_seconds"] >= 0 and data["machine"]["cpus"]
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            continue
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
