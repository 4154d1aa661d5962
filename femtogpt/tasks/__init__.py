"""The toy tasks: TASKS and the dataset generators (toy_data.py, the reference's dummy_data scripts), the
probes and judges of each task (probes.py), and scoring a model on one (scoring.py)."""
