"""Benchmarks: measure packs on the device (or the host under a profile), estimate them off it."""
