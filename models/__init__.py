"""gradq's NumPy core: neural networks written from their math.

Conventions, followed by every module here:

- One example per **column**: X: (n_x, m), Y: (1, m) class labels (0/1 for a sigmoid output)
  or (k, m) one-hot columns for a softmax over k classes.
- Layer l has W[l]: (n[l], n[l-1]), b[l]: (n[l], 1), and Z[l] = W[l] A[l-1] + b[l],
  A[l] = g(Z[l]), A[0] = X, for l = 1 .. L. Parameters are named "W1", "b1", ...; their
  gradients "dW1", "db1", ....
- The convention is for the math and the API, not for memory: training stores examples one
  per row and batches rows (see models/batches.py), because that is what the hardware wants.
- float32 by default, float64 on request; gradient checks always run in float64.
- Same spec and seed, same numbers, bit for bit, on one machine.
"""

from models.activations import ACTIVATIONS, get_activation
from models.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    DatasetError,
    MissingDependencyError,
    flatten,
    load_dataset,
    one_hot,
    scale_pixels,
    standardize,
    train_val_split,
)
from models.gradcheck import GradientCheckStopped, gradient_check
from models.losses import OUTPUTS, binary_cross_entropy, categorical_cross_entropy, softmax
from models.network import Network
from models.optimizers import OPTIMIZERS, decayed_learning_rate
from models.serialization import Checkpoint, load_weights, save_weights
from models.training import DivergenceError, TrainingStopped, train

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_DATASETS",
    "OPTIMIZERS",
    "OUTPUTS",
    "Checkpoint",
    "Dataset",
    "DatasetError",
    "DivergenceError",
    "GradientCheckStopped",
    "MissingDependencyError",
    "Network",
    "TrainingStopped",
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "decayed_learning_rate",
    "flatten",
    "get_activation",
    "gradient_check",
    "load_dataset",
    "load_weights",
    "one_hot",
    "save_weights",
    "scale_pixels",
    "softmax",
    "standardize",
    "train",
    "train_val_split",
]
