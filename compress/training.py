"""The optimizer step that fine-tuning, pruning and distillation share, and the AdamW set-up
with linear warm-up then decay that fine-tuning and distillation use: one copy, so a change to
how a step is taken (clipping, gradient clearing) reaches every loop alike.

Each loop stays in its own module and reads like its loss; only these lines are shared:

>>> optimizer, schedule = adamw_warmup_decay(  # doctest: +SKIP
...     model, 5e-5, 0.01, warmup=0.1, total=100
... )
>>> optimizer_step(loss, optimizer, schedule, model.parameters(), 1.0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

RECENT_STEPS = 20  # the progress bar shows the mean loss of this many last steps


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The model's trainable parameters in two AdamW groups: matrices decayed, the rest not.
    Decaying biases and LayerNorm gains only pulls them towards 0."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def adamw_warmup_decay(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    *,
    warmup: float,
    total: int,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over parameter_groups, and a schedule that ramps the learning rate up linearly over
    the first `warmup` share of `total` steps, then down linearly to 0 at the last one."""
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=learning_rate)
    ramp = max(1, int(warmup * total))
    decay = max(1, total - ramp)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / ramp, max(0.0, (total - step) / decay))
    )
    return optimizer, schedule


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    parameters: Iterable[torch.nn.Parameter],
    clip_norm: float,
) -> None:
    """One step on loss: gradients cleared, back-propagated, clipped to clip_norm (the global L2
    norm over parameters), then the optimizer and the learning-rate schedule step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
    optimizer.step()
    schedule.step()


def recent_loss(losses: Sequence[float]) -> str:
    """The progress bar's loss: the mean of the last RECENT_STEPS steps, 3 decimals."""
    return f"{np.mean(losses[-RECENT_STEPS:]):.3f}"
