"""Where the tests find their committed data files: one definition, used by every test that reads them.

FORK_FIXTURES holds real files made by the Rust femtoGPT fork's own binary (see tests/fixtures/README.md);
they are in the repository, so a plain clone runs every test that reads them.
"""
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FORK_FIXTURES = FIXTURES / "fork"
