"""Doctest collection of ``src``: leave out the PyTorch-only modules without PyTorch."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("torch") is None:
    collect_ignore += [
        "src/logitkit/torch.py",
        "src/logitkit/_torch_linear.py",
        "src/logitkit/_vocab_parallel.py",
    ]
