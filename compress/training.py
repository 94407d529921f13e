"""The optimizer step and the loss log (with its progress bar) that fine-tuning, pruning and
distillation share, and the AdamW set-up with linear warm-up then decay that fine-tuning and
distillation use: one copy, so a change to how a step is taken (clipping, gradient clearing)
reaches every loop alike.

Each loop stays in its own module and reads like its loss; only these lines are shared:

>>> optimizer, schedule = adamw_warmup_decay(  # doctest: +SKIP
...     model, 5e-5, 0.01, warmup=0.1, total=100
... )
>>> log = LossLog(total=100, desc="fine-tune")  # doctest: +SKIP
>>> for feeds, labels in batches:  # doctest: +SKIP
...     loss = cross_entropy(model(**feeds), labels)
...     optimizer_step(loss, optimizer, schedule, model.parameters(), 1.0)
...     log.add(loss.item())
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

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


class LossLog:
    """Every step's loss, and the progress bar that shows the mean of the last RECENT_STEPS.

    losses: a list to extend (a resumed run's); initial: the steps it already holds."""

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        progress: bool = True,
        losses: list[float] | None = None,
        initial: int = 0,
    ) -> None:
        self.losses = [] if losses is None else losses
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=not progress)

    def add(self, loss: float, **shown: str) -> None:
        """Record one step's loss and advance the bar; shown: more figures beside the loss."""
        self.losses.append(loss)
        self.bar.update()
        self.show(**shown)

    def show(self, **shown: str) -> None:
        self.bar.set_postfix(loss=f"{np.mean(self.losses[-RECENT_STEPS:]):.3f}", **shown)

    def close(self) -> None:
        self.bar.close()
