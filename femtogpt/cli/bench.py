"""`femtogpt bench`: the speed and memory benchmark, optionally beside PyTorch in the same run."""
import json
from pathlib import Path

import click

from femtogpt.cli.common import UserError, check_output_path
from femtogpt.cli.flags import MAX_STEPS, THREADS

# the PyTorch reference lives in the repository (bench/torch_ref.py), not in the installed package
DEFAULT_TORCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "torch_ref.py"


@click.command()
@click.option("--config", "configs", multiple=True, type=click.Choice(["tiny", "small", "mid", "large"]),
              help="Configs to run (repeatable) [default: tiny, small, mid, large].")
@click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=10,
              help="Timed steps after 3 warm-up steps.")
@click.option("--threads", type=THREADS, default=2,
              help="Threads for both engines, at most the CPUs this process may use.")
@click.option("--torch", "with_torch", is_flag=True,
              help="Also run the PyTorch reference (needs `pip install torch==2.13.0`) and print ratios.")
@click.option("--torch-script", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Path of the PyTorch reference torch_ref.py [default: bench/torch_ref.py of the femtogpt checkout].")
@click.option("--profile", is_flag=True,
              help="Also time every op (forward and backward) over as many extra steps and print where the time goes.")
@click.option("--out", type=click.Path(dir_okay=False), default="bench/results.json", help="JSON results file.")
def bench(configs, steps, threads, with_torch, torch_script, profile, out):
    """Time training steps, generation, memory and start-up on the reference configs."""
    check_output_path(out, "--out", make_folder=True)
    from femtogpt.atomic import AtomicWriteError, write_atomically
    from femtogpt.tools.bench import FORK_SECONDS_PER_STEP, run_all

    script = None
    if with_torch:
        script = Path(torch_script) if torch_script else DEFAULT_TORCH_SCRIPT
        if not script.exists():
            raise UserError(f"--torch: {script} not found (torch_ref.py is in the repository's bench/, not in an "
                            "installed package); pass --torch-script PATH")
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UserError("--torch needs PyTorch: pip install torch==2.13.0") from None

    click.echo(f"{'config':7s} {'params':>10s} {'s/step':>8s} {'fwd':>7s} {'bwd':>7s} {'opt':>7s} "
               f"{'tok/s':>8s} {'RSS MB':>7s} {'gen kv/full tok/s':>18s} {'1st loss (ln V)':>16s}"
               + ("   torch s/step  ratio  torch RSS" if script else "") + "   fork ratio")

    def show(name, entry):
        r = entry["femtogpt"]
        line = (f"{name:7s} {r['params']:>10,} {r['step_s_median']:8.4f} {r['fwd_s_median']:7.4f} "
                f"{r['bwd_s_median']:7.4f} {r['opt_s_median']:7.4f} {r['tokens_per_s']:8,.0f} "
                f"{r['peak_rss_mb']:7.0f} {r['gen_kv_tokens_per_s']:8.0f}/{r['gen_full_forward_tokens_per_s']:<8.0f}"
                f"  {r['first_loss']:7.4f} ({r['expected_initial_loss']:.4f})")
        if "torch" in entry:
            t = entry["torch"]
            line += (f"   {t['step_s_median']:11.4f} {r['step_s_median'] / t['step_s_median']:6.2f}x "
                     f"{t['peak_rss_mb']:8.0f}")
        fork = FORK_SECONDS_PER_STEP.get(name)
        line += f"   {fork / r['step_s_median']:6.1f}x faster" if fork else "   -"
        click.echo(line)
        if "ops" in r:
            click.echo(profile_table(r["ops"]))

    results = run_all(configs or ("tiny", "small", "mid", "large"), steps=steps, threads=threads,
                      torch_script=script, on_result=show, profile=profile)
    click.echo(f"femtogpt --help starts in {results['startup_help_s'] * 1000:.0f} ms")
    try:
        write_atomically(out, json.dumps(results, indent=2))
    except AtomicWriteError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {out}")


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
