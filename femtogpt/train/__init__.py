"""Training: batch sampling, one step, the loop, evaluation, progress display and kernel precompilation."""
