"""What a training job holds in memory at its peak, estimated from its shapes before it runs.

The estimate follows what the code allocates, in bytes; s is the dtype's itemsize (4 or 8),
P the number of parameters, n[0..L] the layer widths (n[0] = n_x, n[L] = k outputs), b the
training batch (m_train when full-batch), c a scoring batch (models/batches.py scoring_batch):

- data: the loaded set X (m + m_test, n_x), its train/validation copies (m, n_x), labels;
- params: W and b, P·s; the initializer draws each W in float64 first (2 × 8 × its size);
- training: the workspace of a batch (A, Z_out, A_out, dZ: Σ n[l]·b·s twice, and the
  gradients P·s, shared with a shorter last batch's workspace), the batch's rows and targets,
  the per-batch temporaries of the widest layer, the optimizer's state (momentum P·s, Adam
  3·P·s with its scratch), the Gram form's m × m products when it applies (models/fast/gram.py),
  the validation pass (a forward-only workspace of c columns), the history (per value: two
  float64 slots of a growing array and the Python float of the returned list), and up to
  three checkpoint copies of the parameters and optimizer state (the one being written, the
  one waiting, the one just taken: workers/run.py CheckpointWriter) with the write's buffers;
  a resumed attempt also holds the checkpoint it resumed from; and the Python objects of the
  loop (PYTHON_OBJECTS);
- gradient check: a float64 copy of the network and its float64 gradients (2 × 8 × P);
- final scoring: forward-only workspaces of c columns over the train, validation and test
  sets, and weights.npz written from memory (2 × P·s).

The peak is the data and the parameters plus the largest of the phases (initialization,
gradient check, training, final scoring), which never overlap. Python's own objects, MLflow's
client and the worker process itself (a few hundred MB) are not in it.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from models.batches import scoring_batch
from models.fast.gram import CHUNK, gram_form_applies

FLOAT64 = 8
INT64 = 8
# A bytes copy of at most this much per array when .npz is written (numpy's write_array).
NPZ_WRITE_CHUNK = 16 * 1024 * 1024
GRADIENT_CHECK_EXAMPLES = 5  # at most: workers/run.py checks a few training examples
# Bytes per history value: two float64 slots of a doubling array, a float in the returned list.
HISTORY_VALUE_BYTES = 2 * FLOAT64 + 32
CHECKPOINT_COPIES = 3
# The Python objects a job makes as it goes (metric dicts, array headers, prepared products).
PYTHON_OBJECTS = 2 * 1024 * 1024
# Per element of the widest hidden layer's (n, b) batch, in bytes and in itemsizes: the
# temporaries of the activation's steps (models/activations.py: a mask for ReLU, two arrays
# for σ and tanh, a mask, a float64 slope and its cast for leaky ReLU's, Z·0.01 forward).
ACTIVATION_TEMPORARIES = {
    "relu": (1, 0),
    "sigmoid": (0, 2),
    "tanh": (0, 2),
    "leaky_relu": (1 + FLOAT64, 2),
}
OPTIMIZER_COPIES = {"gd": 0, "sgd": 0, "momentum": 1, "adam": 3}
OPTIMIZER_STATE_COPIES = {"gd": 0, "sgd": 0, "momentum": 1, "adam": 2}  # what a checkpoint keeps


@dataclass(frozen=True)
class JobShape:
    """The sizes a job's memory depends on.

    layer_dims: [n_x, n[1], ..., n[L]]; m: examples of the dataset before the validation split;
    m_test: examples of the test split it ships; batch_size: None for full-batch training;
    epochs: how many (the history grows by values_per_epoch each).
    """

    layer_dims: Sequence[int]
    m: int
    m_test: int = 0
    validation_split: float = 0.0
    batch_size: int | None = None
    optimizer: str = "gd"
    l2: float = 0.0
    dtype: str = "float32"
    hidden_activation: str = "relu"
    epochs: int = 1

    @property
    def itemsize(self) -> int:
        return 8 if self.dtype == "float64" else 4

    @property
    def m_val(self) -> int:
        """Examples held out for validation, as models.train_val_split holds them out."""
        return min(round(self.validation_split * self.m), max(self.m - 1, 0))

    @property
    def m_train(self) -> int:
        return self.m - self.m_val

    @property
    def batch(self) -> int:
        """b: examples per training batch."""
        return self.m_train if self.batch_size is None else min(self.batch_size, self.m_train)

    @property
    def num_parameters(self) -> int:
        return sum(n * (n_prev + 1) for n_prev, n in itertools.pairwise(self.layer_dims))

    @property
    def values_per_epoch(self) -> int:
        """Metrics per epoch: cost, train_accuracy, learning_rate, val_accuracy when there is
        a validation split, and one gradient norm per layer."""
        return 3 + (1 if self.m_val else 0) + len(self.layer_dims) - 1

    @property
    def gram_form(self) -> bool:
        """Whether training runs its first layer in the Gram form (models/fast/engine.py)."""
        full_batch_descent = self.optimizer in ("gd", "sgd") and self.batch == self.m_train
        return (
            full_batch_descent
            and not self.l2
            and gram_form_applies(self.m_train, self.layer_dims[0], self.layer_dims[1])
        )


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated peak in bytes, ``total``, and its parts (resident ones and each phase)."""

    parts: dict[str, int]
    phases: dict[str, int]

    @property
    def total(self) -> int:
        return self.parts["data"] + self.parts["parameters"] + max(self.phases.values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.__getitem__)


def estimate_job_memory(job: JobShape) -> MemoryEstimate:
    """The peak memory of training ``job`` in a worker, from its shapes alone."""
    s, P = job.itemsize, job.num_parameters
    parts = {"data": _data(job), "parameters": P * s}
    phases = {
        "initialization": 2 * FLOAT64 * _widest_weights(job.layer_dims),
        "gradient check": _gradient_check(job),
        "training": _training(job),
        "final scoring": _final_scoring(job),
    }
    return MemoryEstimate(parts, phases)


def _data(job: JobShape) -> int:
    """The loaded set with its test split, and the train/validation copies the split makes."""
    n_x, s = job.layer_dims[0], job.itemsize
    loaded = (job.m + job.m_test) * (n_x * s + INT64)
    split = job.m * (n_x * s + INT64)
    return loaded + split


def _widest_weights(layer_dims: Sequence[int]) -> int:
    return max(n * n_prev for n_prev, n in itertools.pairwise(layer_dims))


def _activations(layer_dims: Sequence[int], columns: int, s: int) -> int:
    """A forward-only workspace: A[l] for the hidden layers, Z_out and A_out."""
    hidden, k = sum(layer_dims[1:-1]), layer_dims[-1]
    return (hidden + 2 * k) * columns * s


def _scoring(job: JobShape, m: int) -> int:
    """Scoring an (n_x, m) set in batches: two forward-only workspaces at most, the batch's
    targets and temporaries, and the (1, m) predictions."""
    if m == 0:
        return 0
    c = scoring_batch(m, job.batch)
    dims, s, k = job.layer_dims, job.itemsize, job.layer_dims[-1]
    workspaces = _activations(dims, c, s) + _activations(dims, m % c, s)
    temporaries = c * (k * s * 3 + INT64 * 2) + _activation_temporaries(job, c)
    return workspaces + temporaries + m * (INT64 + 1)


def _activation_temporaries(job: JobShape, columns: int) -> int:
    hidden = job.layer_dims[1:-1]
    if not hidden:
        return 0
    in_bytes, in_items = ACTIVATION_TEMPORARIES.get(job.hidden_activation, (FLOAT64, 2))
    return max(hidden) * columns * (in_bytes + in_items * job.itemsize)


def _batch(job: JobShape, b: int, gradients: bool) -> int:
    """The training workspace of b examples (activations and their gradients), the batch's
    rows, targets and per-batch temporaries; the parameters' gradients when asked."""
    if b == 0:
        return 0
    dims, s, k = job.layer_dims, job.itemsize, job.layer_dims[-1]
    dZ = sum(dims[1:]) * b * s
    rows = b * dims[0] * s if b != job.m_train else 0  # a full batch is a view of the data
    temporaries = b * (k * s * 4 + INT64 * 3) + _activation_temporaries(job, b)
    grads = job.num_parameters * s if gradients else 0
    return _activations(dims, b, s) + dZ + b * s + rows + k * b * s + temporaries + grads


def _checkpoint(job: JobShape) -> int:
    """One checkpoint copy: parameters, optimizer state, the Gram form's W[1]₀, C and W[1] X."""
    s, P = job.itemsize, job.num_parameters
    size = P * s * (1 + OPTIMIZER_STATE_COPIES.get(job.optimizer, 3))
    if job.gram_form:
        n_x, n_1 = job.layer_dims[:2]
        size += n_1 * n_x * s + 2 * n_1 * job.m_train * FLOAT64  # W[1]₀; C and W[1] X
    return size


def _gram(job: JobShape) -> int:
    """The Gram form (models/fast/gram.py): G = XᵀX, P₀, C and W[1] X in float64, W[1]₀, the cross
    products with the validation set, and the largest temporaries of its setup and epochs."""
    if not job.gram_form:
        return 0
    n_x, n_1 = job.layer_dims[:2]
    m, m_val, s = job.m_train, job.m_val, job.itemsize
    resident = (m * m + 3 * n_1 * m + n_1 * m_val + m * m_val) * FLOAT64 + n_1 * n_x * s
    setup = (CHUNK * (m + max(m, n_1)) + m * max(m, m_val)) * FLOAT64
    epoch = 3 * n_1 * m * FLOAT64 + n_1 * m * s
    weights = n_1 * n_x * s + 2 * n_1 * CHUNK * FLOAT64  # W[1] formed for a checkpoint
    validation = (n_1 + m) * scoring_batch(m_val or 1, m) * FLOAT64
    return resident + max(setup, epoch + weights + validation)


def _training(job: JobShape) -> int:
    s, P = job.itemsize, job.num_parameters
    b = job.batch
    batches = _batch(job, b, gradients=True) + _batch(job, job.m_train % b, gradients=False)
    if job.batch == job.m_train:  # one-hot targets of the whole set, made once
        batches += job.layer_dims[-1] * job.m_train * s
    epoch = job.m_train * INT64 * 2  # the shuffled order, the batch's labels
    optimizer = P * s * OPTIMIZER_COPIES.get(job.optimizer, 3)
    l2 = _widest_weights(job.layer_dims) * s if job.l2 else 0
    history = job.epochs * job.values_per_epoch * HISTORY_VALUE_BYTES
    checkpoints = (CHECKPOINT_COPIES + 1) * _checkpoint(job)  # + the one resumed from
    largest_array = max(_widest_weights(job.layer_dims) * s, job.m_train * FLOAT64)
    write = 2 * min(largest_array, NPZ_WRITE_CHUNK)
    # The validation pass, and the finiteness check of X_val's rows before training starts.
    validation = _scoring(job, job.m_val) + scoring_batch(job.m_val) * job.layer_dims[0]
    return (
        batches + epoch + optimizer + l2 + history + checkpoints + write + validation
        + _gram(job) + PYTHON_OBJECTS
    )  # fmt: skip


def _gradient_check(job: JobShape) -> int:
    """A float64 copy of the network, its gradients and workspaces for a few examples."""
    examples = min(GRADIENT_CHECK_EXAMPLES, job.m_train)
    dims = job.layer_dims
    workspaces = 3 * sum(dims[1:]) * examples * FLOAT64
    return 2 * job.num_parameters * FLOAT64 + workspaces


def _final_scoring(job: JobShape) -> int:
    """Scoring the train, validation and test sets after training (one at a time), with
    checkpoints still waiting to be written, weights.npz and the history."""
    scoring = max(_scoring(job, m) for m in (job.m_train, job.m_val, job.m_test))
    weights = 2 * job.num_parameters * job.itemsize
    history = job.epochs * job.values_per_epoch * HISTORY_VALUE_BYTES
    checkpoints = CHECKPOINT_COPIES * _checkpoint(job)
    return scoring + weights + history + checkpoints + PYTHON_OBJECTS


def largest_batch_that_fits(job: JobShape, limit: int) -> int | None:
    """The largest training batch size below the job's own whose estimate is within
    ``limit`` bytes, or None if not even a batch of one fits (memory grows with the batch)."""
    low, high = 1, job.batch - 1
    if high < low or estimate_job_memory(_with_batch(job, low)).total > limit:
        return None
    while low < high:  # the largest b with estimate(b) <= limit lies in [low, high]
        middle = (low + high + 1) // 2
        if estimate_job_memory(_with_batch(job, middle)).total <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def _with_batch(job: JobShape, batch_size: int) -> JobShape:
    return JobShape(**{**job.__dict__, "batch_size": batch_size})
