"""`femtogpt bench`: the speed and memory benchmark, optionally beside PyTorch in the same run."""
import json
from pathlib import Path

import click

from femtogpt.cli.common import UserError, check_output_path
from femtogpt.cli.flags import MAX_STEPS, MAX_UNITS, THREADS

# the PyTorch reference lives in the repository (bench/torch_ref.py), not in the installed package
DEFAULT_TORCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "torch_ref.py"


@click.command()
@click.option("--config", "configs", multiple=True, type=click.Choice(["tiny", "small", "mid", "large"]),
              help="Configs to run (repeatable) [default: tiny, small, mid, large].")
@click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=10,
              help="Timed steps after 3 warm-up steps.")
@click.option("--threads", type=THREADS, default=2,
              help="Threads for both engines, at most the CPUs this process may use (under mpiexec: per process).")
@click.option("--units", type=click.IntRange(1, MAX_UNITS), default=None,
              help="Work units per batch (as train --units) [default: train's].")
@click.option("--scaling", is_flag=True,
              help="Run at 1, 2, 4, ... up to --threads threads and print each config's speed-up over 1 thread "
                   "(beside PyTorch at the same thread count with --torch).")
@click.option("--torch", "with_torch", is_flag=True,
              help="Also run the PyTorch reference (needs `pip install torch==2.13.0`) and print ratios.")
@click.option("--torch-script", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Path of the PyTorch reference torch_ref.py [default: bench/torch_ref.py of the femtogpt checkout].")
@click.option("--profile", is_flag=True,
              help="Also time every op (forward and backward) over as many extra steps and print where the time goes.")
@click.option("--out", type=click.Path(dir_okay=False), default="bench/results.json", help="JSON results file.")
def bench(configs, steps, threads, units, scaling, with_torch, torch_script, profile, out):
    """Time training steps, generation, memory and start-up on the reference configs.

    \b
    Under `mpiexec -n K femtogpt bench`: the K processes train together (as `train` does under
    mpiexec) and each reports its own view: its units, the time they took, and the time spent
    adding the gradients along the processes.
    """
    configs = configs or ("tiny", "small", "mid", "large")
    from femtogpt.train.distributed import launched_processes

    if launched_processes() > 1:
        return _bench_processes(configs, steps, threads, units, out)
    check_output_path(out, "--out", make_folder=True)
    from femtogpt.tools.bench import FORK_SECONDS_PER_STEP, run_all, run_scaling

    script = _torch_script(torch_script) if with_torch else None
    if scaling:
        click.echo(f"{'config':7s} {'threads':>7s} {'s/step':>8s} {'speed-up':>8s} {'GEMM peak':>9s}"
                   + ("   torch s/step  speed-up  ratio" if script else ""))
        one = {}

        def show_scaling(t, name, entry):
            r = entry["femtogpt"]
            one.setdefault(name, entry)
            line = (f"{name:7s} {t:7d} {r['step_s_median']:8.4f} "
                    f"{one[name]['femtogpt']['step_s_median'] / r['step_s_median']:7.2f}x {r['peak_fraction']:8.0%}")
            if "torch" in entry:
                tt, t1 = entry["torch"]["step_s_median"], one[name]["torch"]["step_s_median"]
                line += f"   {tt:12.4f} {t1 / tt:8.2f}x {r['step_s_median'] / tt:5.2f}x"
            click.echo(line)

        results = run_scaling(configs, steps, threads, script, show_scaling, units=units)
        return _write(out, results)

    click.echo(f"{'config':7s} {'params':>10s} {'s/step':>8s} {'fwd':>7s} {'bwd':>7s} {'opt':>7s} "
               f"{'tok/s':>8s} {'RSS MB':>7s} {'gen kv/full tok/s':>18s} {'1st loss (ln V)':>16s} {'peak':>5s}"
               + ("   torch s/step  ratio  torch RSS" if script else "") + "   fork ratio")

    def show(name, entry):
        r = entry["femtogpt"]
        line = (f"{name:7s} {r['params']:>10,} {r['step_s_median']:8.4f} {r['fwd_s_median']:7.4f} "
                f"{r['bwd_s_median']:7.4f} {r['opt_s_median']:7.4f} {r['tokens_per_s']:8,.0f} "
                f"{r['peak_rss_mb']:7.0f} {r['gen_kv_tokens_per_s']:8.0f}/{r['gen_full_forward_tokens_per_s']:<8.0f}"
                f"  {r['first_loss']:7.4f} ({r['expected_initial_loss']:.4f}) {r['peak_fraction']:5.0%}")
        if "torch" in entry:
            t = entry["torch"]
            line += (f"   {t['step_s_median']:11.4f} {r['step_s_median'] / t['step_s_median']:6.2f}x "
                     f"{t['peak_rss_mb']:8.0f}")
        fork = FORK_SECONDS_PER_STEP.get(name)
        line += f"   {fork / r['step_s_median']:6.1f}x faster" if fork else "   -"
        click.echo(line)
        if "ops" in r:
            click.echo(profile_table(r["ops"]))

    results = run_all(configs, steps=steps, threads=threads, torch_script=script, on_result=show, profile=profile,
                      units=units)
    click.echo(f"peak: the share of this machine's float32 GEMM rate on {threads} threads "
               f"({results['gemm_peak_gflops']:.0f} GFLOP/s, measured in this run) that a step's products reach")
    click.echo(f"femtogpt --help starts in {results['startup_help_s'] * 1000:.0f} ms")
    _write(out, results)


def _torch_script(torch_script):
    script = Path(torch_script) if torch_script else DEFAULT_TORCH_SCRIPT
    if not script.exists():
        raise UserError(f"--torch: {script} not found (torch_ref.py is in the repository's bench/, not in an "
                        "installed package); pass --torch-script PATH")
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # not imported here: the children's peak RSS would count it
        raise UserError("--torch needs PyTorch: pip install torch==2.13.0")
    return script


def _write(out, results):
    from femtogpt.atomic import AtomicWriteError, write_atomically

    try:
        write_atomically(out, json.dumps(results, indent=2))
    except AtomicWriteError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {out}")


def _bench_processes(configs, steps, threads, units, out):
    """`mpiexec -n K femtogpt bench`: every process trains each config together with the others (in
    this process, no child processes); process 0 prints each process's view and writes `out`."""
    import sys

    from femtogpt.engine.runtime import engine_threads
    from femtogpt.tools.bench import bench_config
    from femtogpt.train.distributed import GroupError, process_group

    try:
        group = process_group()
    except GroupError as exc:
        raise UserError(str(exc)) from None
    if group.lead:
        check_output_path(out, "--out", make_folder=True)
        click.echo(f"{'config':7s} {'process':>7s} {'units':>7s} {'s/step':>8s} {'own units':>9s} "
                   f"{'adding':>8s} {'RSS MB':>7s}")
    results = {"processes": group.size, "threads_per_process": threads, "configs": {}}
    with engine_threads(threads):
        for name in configs:
            views = group.comm.gather(bench_config(name, steps=steps, units=units, group=group), root=0)
            if not group.lead:
                continue
            results["configs"][name] = views
            for v in views:
                first, end = v["own_units"]
                click.echo(f"{name:7s} {v['rank']:7d} {f'{first}..{end - 1}' if end > first else '-':>7s} "
                           f"{v['step_s_median']:8.4f} {v['own_units_s_median']:9.4f} {v['adding_s_median']:8.4f} "
                           f"{v['peak_rss_mb']:7.0f}")
    if group.lead:
        _write(out, results)
    sys.stdout.flush()


def profile_table(ops):
    """Indented lines: each op's thread time in ms per step (both units' threads summed), largest first."""
    per_op = ops["op_s_per_step"]
    total = sum(per_op.values())
    lines = [f"    per op, ms per step summed over the units' threads "
             f"(wall {ops['wall_s_per_step'] * 1000:.1f} ms per profiled step):"]
    for key, seconds in sorted(per_op.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {key:32s} {seconds * 1000:9.2f} {100 * seconds / total:5.1f}%")
    return "\n".join(lines)


COMMANDS = [bench]
