"""Workstation experiments: scripts that build packs with edgepack.compress and print figures
measured side by side. Not part of the edgepack package; run each from the repository root as
`python -m experiments.NAME` (see the README)."""
