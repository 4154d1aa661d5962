"""simple_dummy2: 50,000 attempts "data action result;" with copy/shift actions (reference §7.3).

    python dummy_data/simple_dummy2.py [--seed N] [--size N] [--out FILE] > dataset.txt

A thin wrapper over femtogpt.tasks.toy_data (also: femtogpt dummy-data simple_dummy2). Runs from a checkout without
installing: the repository root is put on sys.path.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from femtogpt.tasks.toy_data import script_main  # noqa: E402

if __name__ == "__main__":
    script_main("simple_dummy2")
