"""The benchmark's own arithmetic and its views (issue 14): the FLOPs it divides by, the thread counts of
`--scaling`, and `mpiexec -n 2 femtogpt bench`'s per-process view. No timing is asserted."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import Parameters
from femtogpt.model.gpt import GPT
from femtogpt.tools.bench import scaling_threads, step_flops


@pytest.mark.parametrize("B,units", [(3, 2), (4, 1)])
def test_step_flops_counts_every_product_a_training_step_runs(monkeypatch, B, units):
    from femtogpt.engine.ops import attention, matmul

    counted = []
    real_gemm, real_batched = matmul.gemm, attention.batched_gemm

    def gemm(a, b, out):
        counted.append(2 * a.shape[0] * a.shape[1] * b.shape[1])
        return real_gemm(a, b, out)

    def batched(a, b, out):
        counted.append(2 * out.size * a.shape[-1])
        return real_batched(a, b, out)

    monkeypatch.setattr(matmul, "gemm", gemm)
    monkeypatch.setattr(attention, "batched_gemm", batched)
    hp = Hyperparameters(vocab_size=23, num_tokens=6, embedding_degree=8, num_layers=3, num_heads=2)
    model = GPT(hp, Parameters(hp).init_reference(0))
    rng = np.random.default_rng(0)
    model.loss_and_grad(rng.integers(0, 23, (B, 6)), rng.integers(0, 23, (B, 6)), units=units)
    assert sum(counted) == step_flops(hp, B)


def test_scaling_thread_counts():
    assert scaling_threads(1) == [1] and scaling_threads(2) == [1, 2]
    assert scaling_threads(6) == [1, 2, 4, 6] and scaling_threads(16) == [1, 2, 4, 8, 16]


def test_mpiexec_bench_shows_each_process_and_they_train_one_model(tmp_path):
    out = tmp_path / "r.json"
    run = subprocess.run([str(Path(sys.executable).parent / "mpiexec"), "-n", "2", sys.executable, "-m", "femtogpt",
                          "bench", "--config", "tiny", "--steps", "1", "--threads", "1", "--units", "3",
                          "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("tiny ")]
    assert [(r[1], r[2]) for r in rows] == [("0", "0..1"), ("1", "2..2")], run.stdout
    views = json.loads(out.read_text())["configs"]["tiny"]
    assert [v["rank"] for v in views] == [0, 1] and views[0]["first_loss"] == views[1]["first_loss"]
    assert all(v["units"] == 3 and v["processes"] == 2 for v in views)
