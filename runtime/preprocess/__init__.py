"""Preprocessing that runs on the device: text tokenization and image normalisation."""
