"""Thin entry point so `python cli.py train ...` works from a checkout."""
from femtogpt.cli import cli

if __name__ == "__main__":
    cli()
