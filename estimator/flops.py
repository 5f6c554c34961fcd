"""Training and inference FLOPs.

The simple rule: training compute C = 6 * N * D (N parameters, active ones for MoE; D tokens):
2 FLOPs per parameter per token for the forward pass and 4 for the backward pass.
Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv 2001.08361), section 2.1.
"""

from __future__ import annotations


def train_flops_6nd(params: float, tokens: float) -> float:
    """Training FLOPs by 6 * params * tokens (Kaplan et al. 2020). ``params``: active parameters."""
    return 6.0 * params * tokens
