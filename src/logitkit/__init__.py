"""logitkit: logits to probabilities and losses, exactly, on any array library."""

from ._one_hot import one_hot
from ._sigmoid import log_sigmoid, logit, sigmoid, softplus
from ._softmax import log_softmax, logsumexp, softmax

__version__ = "0.1.0.dev0"

__all__ = [
    "__version__",
    "log_sigmoid",
    "log_softmax",
    "logit",
    "logsumexp",
    "one_hot",
    "sigmoid",
    "softmax",
    "softplus",
]
