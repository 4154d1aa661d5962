"""The processes of an `mpiexec -n K femtogpt ...` run, for the commands that use them (train, eval).

Helper module: no commands. The group itself (train/distributed.py) is imported inside the functions,
so `--help` stays free of it.
"""
import os
import sys
from contextlib import contextmanager

import click

from femtogpt.cli.common import UserError


def process_group():
    """The Group of the processes mpiexec started together (None for one process), or one line."""
    from femtogpt.train.distributed import GroupError, process_group as group_of_launch

    try:
        return group_of_launch()
    except GroupError as exc:
        raise UserError(str(exc)) from None


def quiet_unless_lead(group):
    """Silence stdout on every process but process 0 (errors still reach stderr): one voice. Returns
    whether this process is the lead (always, without a group)."""
    lead = group is None or group.lead
    if not lead:
        sys.stdout = open(os.devnull, "w")
    return lead


def threads_per_process(group):
    """Default threads: one per physical core, shared by the processes of the group on this machine."""
    if group is None:
        return None
    from femtogpt.engine.runtime import default_threads

    return max(1, default_threads() // group.local_size())


@contextmanager
def together(group):
    """With a process group: an Error line raised inside by any process stops every process, after the
    block (so none waits for the others forever); process 0 prints it, the others exit 1 silently."""
    if group is None:
        yield
        return
    from femtogpt.train.distributed import GroupError

    error = None
    try:
        yield
    except click.ClickException as exc:
        error = exc.format_message()
    try:
        group.check_all_ok(error)
    except GroupError as exc:
        group_failed(group, exc)


def group_failed(group, exc):
    if group.lead:
        raise UserError(str(exc)) from None
    sys.exit(1)


def check_same_inputs(group, dataset, dataset_hash, tokens, model, optimizer=None):
    """Every process must work on the same tokens and the same model: one line otherwise."""
    import zlib

    from femtogpt.train.distributed import GroupError, weights_digest

    tokens_crc = zlib.crc32(tokens.tobytes())
    try:
        same = f"{dataset_hash} {len(tokens)} {tokens_crc:08x}"  # the path may differ between hosts
        group.check_same(same, "the dataset",
                         f"{dataset} ({len(tokens):,} tokens, fingerprint {dataset_hash[:12]})")
        group.check_same(weights_digest(model, optimizer), "model weights with digest")
    except GroupError as exc:
        group_failed(group, exc)
