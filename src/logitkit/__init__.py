"""logitkit: logits to probabilities and losses, exactly, on any array library."""

from . import compat, grad, vjp
from ._chunked import linear_cross_entropy
from ._config import get_num_threads, set_num_threads, show_config
from ._cross_entropy import softmax_cross_entropy, sparse_softmax_cross_entropy
from ._divergence import kl_divergence, softmax_entropy
from ._one_hot import one_hot
from ._prob_losses import binary_cross_entropy, categorical_cross_entropy
from ._sigmoid import log_sigmoid, logit, sigmoid, softplus
from ._sigmoid_losses import sigmoid_cross_entropy, sigmoid_focal_loss
from ._softmax import log_softmax, logsumexp, softmax
from ._streaming import LogSumExp

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> object:
    # `lk.torch` imports PyTorch: only on first use, never with `logitkit`.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "LogSumExp",
    "__version__",
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "compat",
    "get_num_threads",
    "grad",
    "kl_divergence",
    "linear_cross_entropy",
    "log_sigmoid",
    "log_softmax",
    "logit",
    "logsumexp",
    "one_hot",
    "set_num_threads",
    "show_config",
    "sigmoid",
    "sigmoid_cross_entropy",
    "sigmoid_focal_loss",
    "softmax",
    "softmax_cross_entropy",
    "softmax_entropy",
    "softplus",
    "sparse_softmax_cross_entropy",
    "vjp",
]
