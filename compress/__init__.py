"""Workstation-side compression: export, quantization, distillation and pruning into packs."""
