#!/usr/bin/env bash
# Issue 14's 16-core figures, in one go on the device machine (its python3 has numpy, numba, click,
# msgpack, rich, tokenizers, torch and mpi4py; no registry, so run from the checkout):
#   bash bench/device_scaling.sh > $OUT/scaling.txt 2>&1
# femtogpt at 1..16 threads beside PyTorch at the same count, with the default 2 units and with 16
# units (one per core), then 4 processes x 4 threads. About 8 minutes.
set -u
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-/tmp}
nproc; lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket" || true
python3 -m femtogpt bench --scaling --threads 16 --torch --config small --config large --steps 5 \
  --out "$OUT/scaling_units2.json"
python3 -m femtogpt bench --scaling --threads 16 --config small --config large --steps 5 --units 16 \
  --out "$OUT/scaling_units16.json"
if command -v mpiexec >/dev/null; then
  mpiexec -n 4 python3 -m femtogpt bench --config small --config large --steps 5 --threads 4 --units 16 \
    --out "$OUT/mpi_4x4.json"
fi
