"""The `femtogpt` command line: Click commands that parse, call one library function and print.

One module per area, each listing its Click commands in COMMANDS; cli/common.py holds what several
share, and no command module imports another. No model logic lives here, and
nothing heavy is imported at module level: `femtogpt --help` must start instantly, so each command
imports the engine (NumPy, Numba kernels) inside its body.

Ctrl-C is one line and exit code 130 wherever it lands: while the command line loads (nothing has been
done yet), in any command (`Group.invoke` below; `train` says more, see cli/model.py), never a traceback
or Click's "Aborted!" with exit code 1.
"""
try:  # the whole module: a Ctrl-C while the command line loads (the console script imports this first)
    import click

    from femtogpt.cli import (analysis, bench, data, export, fork, growth, infer, info, inside, model, pipeline,
                              scoring, text)

    COMMAND_MODULES = [model, infer, info, inside, analysis, text, growth, pipeline, data, scoring, fork, export, bench]

    class Group(click.Group):
        def invoke(self, ctx):
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt:  # a command with nothing more precise to say about it
                import signal

                signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting: one more Ctrl-C must not cut this short
                click.echo("Interrupted.", err=True)
                ctx.exit(130)

    @click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
    @click.version_option(package_name="femtogpt")
    def cli():
        """femtogpt: train, grow and inspect small GPT models on your CPU (NumPy + Numba)."""

    for _module in COMMAND_MODULES:
        for _command in _module.COMMANDS:
            cli.add_command(_command)
except KeyboardInterrupt:
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting: one more Ctrl-C must not cut this short
    sys.stderr.write("Interrupted while starting; nothing was changed.\n")
    raise SystemExit(130) from None
