"""PyTorch-only functions: autograd Functions and ``torch.distributed`` losses.

``import logitkit`` does not import PyTorch; ``lk.torch`` does, on first use.

- :func:`linear_cross_entropy`: the fused ``F.linear`` + ``F.cross_entropy``
  of :func:`logitkit.linear_cross_entropy` as a ``torch.autograd.Function``.
- :func:`vocab_parallel_cross_entropy`: the cross entropy of logits whose
  vocabulary is split over the ranks of a ``torch.distributed`` group, with
  one all-gather.
"""

from __future__ import annotations

from ._torch_linear import linear_cross_entropy
from ._vocab_parallel import vocab_parallel_cross_entropy

__all__ = ["linear_cross_entropy", "vocab_parallel_cross_entropy"]
