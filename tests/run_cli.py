"""Running the CLI in-process for tests."""
from click.testing import CliRunner

from femtogpt.cli import cli


def run(*args, ok=True):
    """Invoke `femtogpt ARGS...`; with ok, assert it exited 0 (showing its output if not)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def tiny_model_folder(folder):
    """folder with dataset.txt and a tiny model.dat (E8 L1 H2 T8, seed 1): enough for commands to reach
    their checks. Returns folder."""
    import os

    (folder / "dataset.txt").write_text("hello world, hello femtogpt. " * 40)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        run("init", "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2, "--num-tokens", 8, "--seed", 1)
    finally:
        os.chdir(cwd)
    return folder
