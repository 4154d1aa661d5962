"""The toy tasks: dataset generators (the reference's dummy_data scripts) and their scorers."""
