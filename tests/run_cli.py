"""Running the CLI in-process for tests."""
from click.testing import CliRunner

from femtogpt.cli import cli


def run(*args, ok=True):
    """Invoke `femtogpt ARGS...`; with ok, assert it exited 0 (showing its output if not)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result
