"""Benchmarks: measure packs on the device (or the host under a profile) and predict them off it."""
