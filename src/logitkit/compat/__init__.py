"""Drop-in namespaces with the names and signatures of other frameworks.

``logitkit.compat.tf`` (``tf.nn`` / ``tf.math``), ``logitkit.compat.keras``
(``keras.losses``) and ``logitkit.compat.torch`` (``torch.nn.functional``)
take the originals' arguments, in the originals' order, with the originals'
defaults and conventions, on arrays of any library, and compute the values
exactly with logitkit. None of them imports the framework it imitates.
"""

from __future__ import annotations

from . import keras, tf, torch

__all__ = ["keras", "tf", "torch"]
