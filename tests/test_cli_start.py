"""The CLI starts without importing the engine: `femtogpt --help` stays instant."""
import subprocess
import sys


def test_help_imports_no_engine():
    code = (
        "import sys; from click.testing import CliRunner; from femtogpt.cli import cli;"
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output;"
        "assert 'femtogpt' in r.output;"
        "heavy = [m for m in ('numba', 'numpy', 'femtogpt.ops', 'femtogpt.model') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
