"""addition_dummy: 8,000 lines "a + b = a+b;" with a, b uniform in 0..100 (reference §7.2).

    python dummy_data/addition_dummy.py [--seed N] [--size N] [--out FILE] > dataset.txt

A thin wrapper over femtogpt.tasks.toy_data (also: femtogpt dummy-data addition_dummy). Runs from a checkout without
installing: the repository root is put on sys.path.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from femtogpt.tasks.toy_data import script_main  # noqa: E402

if __name__ == "__main__":
    script_main("addition_dummy")
