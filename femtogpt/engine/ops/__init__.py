"""The ops: one file each, a pair of Numba kernels (forward/backward) and a thin Function on top.

Every kernel takes arrays and numbers only, works for float32 (training) and float64 (gradchecks),
and gives results that do not depend on the number of threads: each output element is written by one
loop iteration, and reductions over rows go through fixed-size row chunks summed in a fixed order.
"""
