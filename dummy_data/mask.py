"""mask: replace each character of a text with `--replacement` with probability `--rate`.

    python dummy_data/simple_dummy.py --seed 1 | python dummy_data/mask.py --rate 0.01 --seed 2 > masked.txt

The reference's mask.py defined mask(s, threshold=0.001, replacement="x") but never imported
`random`, so it could not run, and nothing used it. Here it is seeded, reads a file or stdin, and
checks its arguments; the function is femtogpt.tasks.toy_data.mask.
"""
import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from femtogpt.tasks.toy_data import mask, write_output  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mask.py", description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default="-", help="input file [default: stdin]")
    parser.add_argument("--rate", type=float, default=0.001, help="replacement probability [default: 0.001]")
    parser.add_argument("--replacement", default="x", help="the replacing string [default: x]")
    parser.add_argument("--seed", type=int, default=None, help="seed [default: random]")
    parser.add_argument("--out", default=None, help="output file [default: stdout]")
    args = parser.parse_args(argv)
    if not 0.0 <= args.rate <= 1.0:
        parser.error(f"--rate must be in [0, 1], got {args.rate}")
    if args.input == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read {args.input}: {exc}")
    write_output(mask(text, args.rate, args.replacement, random.Random(args.seed)), args.out)


if __name__ == "__main__":
    main()
