"""Sweeps (a model over a grid of parameters) and schedules (a model on a clock)."""
