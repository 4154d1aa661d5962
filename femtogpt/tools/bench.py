"""The benchmark: training-step time (forward/backward/optimizer split), generation tokens/s with and
without the KV cache, peak memory, and start-up time, on the configs of the PyTorch reference
(bench/torch_ref.py in the repository), optionally side by side with it in the same run.

Each config runs in its own process so its peak RSS is its own. `python -m femtogpt.tools.bench CONFIG`
runs one config and prints one JSON line; `run_all` drives them and the optional torch runs.
"""
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {  # name: (vocab, num_tokens, embedding, layers, heads), as torch_ref.py
    "tiny": (128, 64, 64, 4, 4),
    "small": (1054, 80, 192, 8, 8),
    "mid": (2176, 160, 162, 6, 6),
    "large": (1054, 80, 768, 8, 16),
}
FORK_SECONDS_PER_STEP = {"tiny": 1.05, "small": 13.4}  # the Rust fork, batch 32, 2 threads (issue #8)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_flops(hp, batch):
    """Floating-point operations of one training step (forward and backward) in its matrix products:
    6 per weight per token for the linear layers and the head, and 12 T^2 E per sequence and layer
    for attention's four batched products (full T x T, as they are computed)."""
    E, L, V, T = hp.embedding_degree, hp.num_layers, hp.vocab_size, hp.num_tokens
    return batch * T * 6 * (12 * E * E * L + E * V) + batch * L * 12 * T * T * E


def gemm_peak_flops(threads, n=2048, reps=3):
    """This machine's float32 GEMM rate (FLOP/s) through NumPy's BLAS on `threads` threads: the best of
    `reps` (n, n) @ (n, n) products. The ceiling a training step's products could reach at best."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, a, out=out)
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            np.matmul(a, a, out=out)
            best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def bench_config(name, steps=10, warmup=3, batch=32, gen_tokens=100, seed=0, profile=False, units=None,
                 group=None):
    """Time training steps and generation for one config; returns a dict (run in a fresh process).
    With `profile`, `steps` more steps run with per-op timing (kept apart from the timed steps).
    `units`: work units per batch (model/gpt.py's default when None). With a process `group`
    (train/distributed.py) every process runs this together, each its share of the units; the
    result is this process's view (its units' time and the time spent adding the gradients), and
    generation is not timed."""
    import numpy as np

    from femtogpt.engine.autograd import OpProfile
    from femtogpt.config import Hyperparameters, OptimizerConfig
    from femtogpt.model.generate import generate
    from femtogpt.model.gpt import DEFAULT_UNITS, GPT
    from femtogpt.engine.optim import AdamW
    from femtogpt.engine.params import Parameters
    from femtogpt.train.precompile import warm_up

    V, T, E, L, H = CONFIGS[name]
    units = units or DEFAULT_UNITS
    t0 = time.perf_counter()
    warm_up()
    compile_s = time.perf_counter() - t0
    hp = Hyperparameters(vocab_size=V, num_tokens=T, embedding_degree=E, num_layers=L, num_heads=H,
                         pos_enc="absolute")
    model = GPT(hp, Parameters(hp).init_reference(seed))
    opt = AdamW(model.params, OptimizerConfig())
    rng = np.random.default_rng(seed)

    def step(timings=None):
        """One training step as `train` runs it; returns (loss, start, end of gradients, end)."""
        ids, targets = rng.integers(0, V, (batch, T)), rng.integers(0, V, (batch, T))
        t0 = time.perf_counter()
        loss = model.loss_and_grad(ids, targets, timings=timings, units=units, group=group)
        t2 = time.perf_counter()
        opt.update(lr=1e-3)
        return loss, t0, t2, time.perf_counter()

    fwd, bwd, upd, total, losses, own, adding = [], [], [], [], [], [], []
    for i in range(warmup + steps):
        timings = {}
        loss, t0, t2, t3 = step(timings)
        t1 = timings.get("forward_end", t0)  # unit 0's forward (a process without units has none)
        losses.append(loss)
        if i >= warmup:
            fwd.append(t1 - t0), bwd.append(t2 - t1), upd.append(t3 - t2), total.append(t3 - t0)
            if group is not None:
                own.append(timings["units_end"] - t0), adding.append(t2 - timings["units_end"])
    peak_train = peak_rss_mb()
    ops = None
    if profile:
        with OpProfile() as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                _, _, t2, t3 = step()
                prof.add("AdamW.update", t3 - t2)
            wall = (time.perf_counter() - t0) / steps
        ops = {"wall_s_per_step": wall, "op_s_per_step": {k: v / steps for k, v in prof.seconds.items()}}
    med = statistics.median(total)
    result = {
        "config": name, "params": hp.num_params(), "batch": batch, "ctx": T, "steps": steps, "units": units,
        "step_s_median": med, "step_s_min": min(total), "tokens_per_s": batch * T / med,
        "fwd_s_median": statistics.median(fwd), "bwd_s_median": statistics.median(bwd),
        "opt_s_median": statistics.median(upd), "first_loss": losses[0],
        "expected_initial_loss": math.log(V), "peak_rss_train_mb": peak_train,
        "step_gflop": step_flops(hp, batch) / 1e9, "compile_or_cache_s": compile_s,
        **({"ops": ops} if ops else {}),
    }
    if group is not None:
        first, end = group.unit_range(min(units, batch))
        return {**result, "rank": group.rank, "processes": group.size, "own_units": [first, end],
                "own_units_s_median": statistics.median(own), "adding_s_median": statistics.median(adding),
                "peak_rss_mb": peak_rss_mb()}
    # generation at this config's context: KV cache vs a full forward per token (the reference's way)
    prompt = [int(x) for x in rng.integers(0, V, 8)]
    generate(model, prompt, 4, temperature=0)
    t0 = time.perf_counter()
    generate(model, prompt, gen_tokens, temperature=0)
    kv_tps = gen_tokens / (time.perf_counter() - t0)
    context = list(prompt)
    naive_n = max(10, gen_tokens // 5)
    t0 = time.perf_counter()
    for _ in range(naive_n):
        window = context[-T:]
        padded = np.zeros((1, T), np.int64)
        padded[0, :len(window)] = window  # the reference pads to T and runs the whole window
        context.append(int(np.argmax(model.logits(padded)[0, len(window) - 1])))
    naive_tps = naive_n / (time.perf_counter() - t0)
    return {**result, "peak_rss_mb": peak_rss_mb(), "gen_kv_tokens_per_s": kv_tps,
            "gen_full_forward_tokens_per_s": naive_tps}


def startup_seconds(reps=5):
    """Median wall time of `femtogpt --help` in a fresh interpreter."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "femtogpt", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    for line in reversed(out.splitlines()):
        if line.startswith("{") or line.startswith("JSON "):
            return json.loads(line.removeprefix("JSON "))
    raise RuntimeError(f"no JSON line in the output of {' '.join(cmd)}")


def run_all(configs, steps=10, threads=2, torch_script=None, on_result=print, profile=False, units=None,
            startup=True):
    """Every config in its own process (and torch_ref.py beside it when given); returns the results,
    with this machine's GEMM peak at `threads` threads (gemm_peak_flops) measured in the same run."""
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}  # the child's pool; it runs on all of it
    results = {"threads": threads, "configs": {},
               "gemm_peak_gflops": _run_json([sys.executable, "-m", "femtogpt.tools.bench", "--gemm-peak",
                                              str(threads)], env=env)["gflops"]}
    if startup:
        results["startup_help_s"] = startup_seconds()
    for name in configs:
        ours = _run_json([sys.executable, "-m", "femtogpt.tools.bench", name, str(steps)]
                         + (["--profile"] if profile else []) + (["--units", str(units)] if units else []),
                         env=env)
        ours["peak_fraction"] = ours["step_gflop"] / ours["step_s_median"] / results["gemm_peak_gflops"]
        entry = {"femtogpt": ours}
        if torch_script is not None:
            entry["torch"] = _run_json([sys.executable, str(torch_script), "--config", name, "--steps",
                                        str(steps), "--threads", str(threads)])
        results["configs"][name] = entry
        on_result(name, entry)
    return results


def scaling_threads(most):
    """1, 2, 4, ... below `most`, then `most`."""
    counts, t = [], 1
    while t < most:
        counts.append(t)
        t *= 2
    return counts + [most]


def run_scaling(configs, steps=10, most=2, torch_script=None, on_result=print, units=None):
    """run_all at 1, 2, 4, ..., `most` threads; on_result(threads, name, entry) after each config."""
    runs = {}
    for threads in scaling_threads(most):
        runs[threads] = run_all(configs, steps, threads, torch_script, units=units, startup=False,
                                on_result=lambda name, entry, t=threads: on_result(t, name, entry))
    return {"scaling": runs}


def main():
    import numba

    from femtogpt.engine.runtime import engine_threads

    args = [a for a in sys.argv[1:] if a != "--profile"]
    if args[0] == "--gemm-peak":
        print(json.dumps({"gflops": gemm_peak_flops(int(args[1])) / 1e9}))
        return
    units = None
    if "--units" in args:
        i = args.index("--units")
        units, args = int(args[i + 1]), args[:i] + args[i + 2:]
    name, steps = args[0], int(args[1]) if len(args) > 1 else 10
    with engine_threads(numba.config.NUMBA_NUM_THREADS):  # the whole pool: run_all sized it to --threads
        print(json.dumps(bench_config(name, steps=steps, profile="--profile" in sys.argv, units=units)))


if __name__ == "__main__":
    main()
