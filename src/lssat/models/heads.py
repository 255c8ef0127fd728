"""Task heads: a linear classifier on a pooled feature (SSAT's head on the CLS token).

The head's output size comes from the task (`lssat.tasks`); the model never knows which task it is.
For Fusion-SSAT the input is the concatenation of the encoder's pooled feature and the pooled
auxiliary feature, so `in_dim` is their sum.
"""

from __future__ import annotations

import torch
from torch import nn

from lssat.errors import ConfigError


class LinearHead(nn.Module):
    """Optional dropout, then one linear layer (truncated-normal init, std 0.02, zero bias).

    Args:
        in_dim: width of the pooled input feature.
        num_outputs: logits per sample (from the task).
        dropout: dropout probability before the linear layer.
    """

    def __init__(self, in_dim: int, num_outputs: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_outputs < 1:
            raise ConfigError(f"head: num_outputs must be a positive integer, got {num_outputs!r}")
        self.in_dim = in_dim
        self.num_outputs = num_outputs
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_outputs)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, num_outputs) logits."""
        return self.fc(self.drop(pooled))
