"""Optimizers (parameter groups, fused kernels) and learning-rate schedules."""
