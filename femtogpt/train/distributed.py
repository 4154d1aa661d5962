"""Training on several processes (MPI, through mpi4py): the batch's work units shared out, the same bits.

`mpiexec -n K femtogpt train ...` starts K processes. Each draws the whole batch (it is a function of
seed and step), runs a contiguous share of its work units (model/gpt.py), and the group adds the
units' gradients in unit order, exactly as one process adds them:

    rank 0 adds its units into its gradient as they finish (it holds unit 0, the start of the sum);
    rank r > 0 keeps each of its units' gradients apart, receives the running sum from rank r - 1,
    adds its units to it in order, and sends it on; the last rank broadcasts the total.

Float addition is not associative, so this chain (not MPI's reduce, whose order is MPI's choice) is
what makes K processes give the bits of one, whatever K. Each rank then applies the same AdamW
update to the same weights. Per step each rank sends and receives the gradient once along the chain
plus the broadcast: about 3 * 4P bytes for P float32 parameters (README, "Several processes").
"""
import os
import zlib

import numpy as np

_GRADIENT, _INSTALL = 17, "pip install 'femtogpt[mpi]' (in a checkout: pip install -e '.[mpi]')"
# what mpiexec tells the processes it starts: MPICH/Hydra and Intel MPI, Open MPI, Slurm
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")


class GroupError(RuntimeError):
    """The processes of a group disagree (dataset, model), or MPI cannot be used; the message is one line."""


def launched_processes(environ=os.environ):
    """How many processes mpiexec started this one among (1 when not started by mpiexec)."""
    for name in _SIZE_VARIABLES:
        try:
            return max(1, int(environ[name]))
        except (KeyError, ValueError):
            continue
    return 1


def process_group(environ=os.environ):
    """The Group of the processes mpiexec started together, or None for a single process."""
    processes = launched_processes(environ)
    if processes <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise GroupError(f"started by mpiexec as one of {processes} processes, but mpi4py is not "
                         f"installed: {_INSTALL}") from None
    return Group(MPI.COMM_WORLD)


class Group:
    """The processes training together: `rank` (0 reads and writes the model file), `size`."""

    def __init__(self, comm):
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.lead = self.rank == 0

    def local_size(self):
        """How many processes of the group run on this machine."""
        from mpi4py import MPI

        return self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()

    def unit_range(self, units):
        """(first, end): the units this process runs, a contiguous share; rank 0's is never empty."""
        start = lambda r: -(-units * r // self.size)  # noqa: E731  (ceil(units * r / size))
        return start(self.rank), start(self.rank + 1)

    def add_gradients(self, grad, waiting, add):
        """Make `grad` the sum of every unit's gradient in unit order, on every process. On rank 0,
        `grad` already holds its own units' sum; elsewhere `waiting` holds this process's units'
        gradients in order, and add(total, piece) adds one into the running sum."""
        if self.rank > 0:
            self.comm.Recv(grad, source=self.rank - 1, tag=_GRADIENT)
            for piece in waiting:
                add(grad, piece)
        if self.rank < self.size - 1:
            self.comm.Send(grad, dest=self.rank + 1, tag=_GRADIENT)
        self.comm.Bcast(grad, root=self.size - 1)

    def all_losses(self, losses):
        """Every unit's loss, in unit order (each process gives its units' losses)."""
        return [loss for part in self.comm.allgather(losses) for loss in part]

    def any(self, flag):
        """True on every process when `flag` is true on one (e.g. a Ctrl-C seen by one of them)."""
        return any(self.comm.allgather(bool(flag)))

    def broadcast(self, value):
        """Rank 0's `value` (any picklable object), on every process."""
        return self.comm.bcast(value, root=0)

    def check_same(self, value, what, shown=None):
        """Raise GroupError on every process when `value` (a str) differs between processes; the message
        names the first process that differs from rank 0 and says what each sees (`shown`, default
        `value`) of `what`."""
        values = self.comm.allgather((value, value if shown is None else shown))
        for rank, (other, seen) in enumerate(values):
            if other != values[0][0]:
                raise GroupError(f"process {rank} of {self.size} sees {what} {seen}, process 0 sees "
                                 f"{values[0][1]}: every process must see the same files")

    def check_all_ok(self, error):
        """Collect one error line (or None) from every process: raise GroupError with the first one on
        every process when any has one, so all of them stop together."""
        errors = self.comm.allgather(error)
        for rank, message in enumerate(errors):
            if message is not None:
                raise GroupError(message if self.size == 1 else f"process {rank}: {message}")


def weights_digest(model, optimizer=None):
    """8 hex digits of the weights (and AdamW's moments): a cheap check that processes hold one model."""
    crc = zlib.crc32(np.ascontiguousarray(model.params.data).view(np.uint8))
    if optimizer is not None:
        crc = zlib.crc32(optimizer.m.view(np.uint8), crc)
        crc = zlib.crc32(optimizer.v.view(np.uint8), crc)
    return f"{crc:08x}"
