"""Hydra Sweeper plugin `hydra/sweeper=lorahpo`: HPO sweeps on Ray Tune."""
