"""HPO sweeps: search space, algorithms, trials on Ray Tune, the sweep summary."""
