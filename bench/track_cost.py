"""What train --track-every costs: one tracked step (a weight copy, the statistics and a traced forward)
against one training step, on the tiny and small configs, 2 threads. Run: python bench/track_cost.py"""
import time, numpy as np
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.engine.params import Parameters
from femtogpt.engine.optim import AdamW
from femtogpt.engine.runtime import engine_threads
from femtogpt.model.gpt import GPT
from femtogpt.train.step import train_step
from femtogpt.train.tracking import track
for name, (V, T, E, L, H) in {"tiny": (128, 64, 64, 4, 4), "small": (1054, 80, 192, 8, 8)}.items():
    hp = Hyperparameters(vocab_size=V, num_tokens=T, embedding_degree=E, num_layers=L, num_heads=H)
    m = GPT(hp, Parameters(hp).init_reference(0)); opt = AdamW(m.params, OptimizerConfig())
    rng = np.random.default_rng(0)
    with engine_threads(2):
        steps, tracks = [], []
        for i in range(8):
            ids, tg = rng.integers(0, V, (32, T)), rng.integers(0, V, (32, T))
            t0 = time.perf_counter(); before = m.params.data.copy(); t1 = time.perf_counter()
            train_step(m, opt, ids, tg); t2 = time.perf_counter()
            track(m, before, ids, 2, opt.step); t3 = time.perf_counter()
            if i >= 2: steps.append(t2 - t1); tracks.append(t3 - t2 + t1 - t0)
    s, t = np.median(steps), np.median(tracks)
    print(f"{name}: step {s:.4f} s, tracking {t:.4f} s = {t / s:.2f} steps; at N=100: {100 * t / (100 * s):.2f}% of step time")
