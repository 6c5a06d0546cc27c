"""Factorization Machines trainer (numpy + scipy), the numerical core of the local FM job.

Model (Rendle 2010): y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j, trained with mini-batch
lazy Adam (MXNet's sparse semantics: only the rows a batch touches are updated), per-group learning
rates and L2 weight decays as SageMaker's ``bias_*`` / ``linear_*`` / ``factors_*`` hyperparameters.
Why Adam and these semantics: ``docs/decisions/0003-local-fm-trainer.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

try:
    from scipy.sparse._sparsetools import csc_matvecs as _csc_matvecs
except ImportError:  # pragma: no cover - only if scipy moves its private kernels
    _csc_matvecs = None

BINARY = "binary_classifier"
REGRESSOR = "regressor"
INIT_METHODS = ("normal", "uniform", "constant")
# SageMaker exposes no seed for FM; a fixed one makes local runs reproducible.
DEFAULT_SEED = 20180101
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True, kw_only=True)
class InitSpec:
    method: str = "normal"
    sigma: float = 0.01
    scale: float | None = None
    value: float | None = None


@dataclass(frozen=True, kw_only=True)
class FMConfig:
    """FM hyperparameters, already parsed and validated (names as SageMaker's)."""

    feature_dim: int
    num_factors: int
    predictor_type: str
    epochs: int = 1
    mini_batch_size: int = 1000
    bias_lr: float = 0.1
    linear_lr: float = 0.001
    factors_lr: float = 0.0001
    bias_wd: float = 0.01
    linear_wd: float = 0.001
    factors_wd: float = 0.00001
    bias_init: InitSpec = InitSpec(sigma=0.01)
    linear_init: InitSpec = InitSpec(sigma=0.01)
    factors_init: InitSpec = InitSpec(sigma=0.001)
    clip_gradient: float | None = None
    eps: float | None = None
    rescale_grad: float | None = None


@dataclass
class FMParams:
    w0: float
    w: np.ndarray  # (N,) float32
    V: np.ndarray  # (N, k) float32


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    seconds: float
    rows: int


def _init(spec: InitSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if spec.method == "normal":
        return rng.normal(0.0, spec.sigma, size=shape).astype(np.float32)
    if spec.method == "uniform":
        scale = spec.scale if spec.scale is not None else 0.0
        return rng.uniform(-scale, scale, size=shape).astype(np.float32)
    return np.full(shape, spec.value if spec.value is not None else 0.0, dtype=np.float32)


def init_params(config: FMConfig, rng: np.random.Generator) -> FMParams:
    n, k = config.feature_dim, config.num_factors
    w0 = float(_init(config.bias_init, (1,), rng)[0])
    w = _init(config.linear_init, (n,), rng)
    V = _init(config.factors_init, (n, k), rng)
    return FMParams(w0=w0, w=w, V=V)


def predict_raw(X: sp.csr_matrix, params: FMParams, *, batch_rows: int = 65536) -> np.ndarray:
    """Raw FM output (logit for the binary classifier) for every row of X."""
    X = sp.csr_matrix(X, dtype=np.float32)
    out = np.empty(X.shape[0], dtype=np.float64)
    v_sq = np.einsum("ij,ij->i", params.V, params.V)
    for start in range(0, X.shape[0], batch_rows):
        Xb = X[start : start + batch_rows]
        s = Xb @ params.V
        inter = 0.5 * (np.einsum("ij,ij->i", s, s) - Xb.multiply(Xb) @ v_sq)
        out[start : start + len(inter)] = params.w0 + Xb @ params.w + inter
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def binary_metrics(y: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 at 0.5 and mean log loss, as SageMaker FM reports them on the test channel."""
    p = np.clip(_sigmoid(raw.astype(np.float64)), 1e-12, 1 - 1e-12)
    truth = y > 0.5
    pred = p > 0.5
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    loss = -np.mean(np.where(truth, np.log(p), np.log1p(-p)))
    return {"accuracy": float(np.mean(pred == truth)), "f1": f1, "log_loss": float(loss)}


def regression_metrics(y: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    return {"rmse": float(np.sqrt(np.mean((raw - y) ** 2)))}


class _LazyAdam:
    """Adam over the rows a batch touches (MXNet lazy_update), on the packed table P = [V | w].

    Packing w as the last column lets one set of array passes update both with per-column
    learning rates (factors_lr for V, linear_lr for w; the decays are applied in ``_batch_grad``).
    The moments are kept unnormalised
    (m' = m / (1 - beta1), v' = v / (1 - beta2)) to save two array passes per batch; the update is
    algebraically Adam's: lr_t * m / (sqrt(v) + eps).
    """

    def __init__(self, n_rows: int, lr: np.ndarray, eps: float, clip: float | None):
        self.m = np.zeros((n_rows, lr.shape[0]), dtype=np.float32)
        self.v = np.zeros_like(self.m)
        self.lr, self.clip = lr, clip
        self.eps = np.float32(eps / math.sqrt(1 - _BETA2))

    def step(self, P: np.ndarray, rows: np.ndarray, Pr: np.ndarray, grad: np.ndarray, t: int) -> None:
        """One update of rows ``rows`` (current values ``Pr``).

        ``grad`` is MXNet's adam_update input: rescaled loss gradient + wd * weight (``_batch_grad``
        folds the decay in); clipping comes after, as in MXNet.
        """
        if self.clip is not None:
            np.clip(grad, -self.clip, self.clip, out=grad)
        m, v = self.m[rows], self.v[rows]
        m *= _BETA1
        m += grad
        v *= _BETA2
        np.square(grad, out=grad)
        v += grad
        self.m[rows] = m
        self.v[rows] = v
        corr = math.sqrt(1 - _BETA2**t) / (1 - _BETA1**t) * (1 - _BETA1) / math.sqrt(1 - _BETA2)
        den = np.sqrt(v, out=grad)
        den += self.eps
        np.divide(m, den, out=den)
        den *= self.lr * np.float32(corr)
        Pr -= den
        P[rows] = Pr


class _ScalarAdam:
    def __init__(self, lr: float, wd: float, eps: float, clip: float | None):
        self.m = self.v = 0.0
        self.lr, self.wd, self.eps, self.clip = lr, wd, eps, clip

    def step(self, value: float, grad: float, t: int) -> float:
        grad += self.wd * value
        if self.clip is not None:
            grad = min(max(grad, -self.clip), self.clip)
        self.m = _BETA1 * self.m + (1 - _BETA1) * grad
        self.v = _BETA2 * self.v + (1 - _BETA2) * grad * grad
        corr = math.sqrt(1 - _BETA2**t) / (1 - _BETA1**t)
        return value - self.lr * corr * self.m / (math.sqrt(self.v) + self.eps)


@dataclass
class _Batch:
    """One mini-batch in CSR form: ``cols``/``vals`` are (B, m) when every row has m non-zeros."""

    cols: np.ndarray
    vals: np.ndarray
    indptr: np.ndarray  # (B+1,) int32 offsets into the flattened cols/vals
    y: np.ndarray
    ones: bool  # every stored value is 1.0 (one-hot rows): skip the multiplications by x


def _distinct(flat_cols: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct columns of a batch and each entry's position among them."""
    if slot.shape[0] <= 16 * flat_cols.shape[0]:
        # Small feature space: a bincount over it is cheaper than sorting the batch's entries.
        rows = np.flatnonzero(np.bincount(flat_cols, minlength=slot.shape[0]))
        slot[rows] = np.arange(rows.shape[0], dtype=np.int32)
        return rows, slot[flat_cols]
    rows, inv = np.unique(flat_cols, return_inverse=True)
    return rows, inv.astype(np.int32)


def _batch_grad(
    P: np.ndarray,
    k: int,
    w0: float,
    batch: _Batch,
    binary: bool,
    slot: np.ndarray,
    rescale: float,
    wd: np.ndarray,
):
    """Gradient of one mini-batch, as MXNet's optimiser sees it.

    Returns (distinct columns touched, their current packed rows, rescale * (summed loss gradient)
    + wd * weight for those rows [dV | dw], rescale * d/dw0 (no decay), summed loss). Folding the
    scale and the decay in here saves two passes over the touched rows.
    """
    flat_cols, flat_vals = batch.cols.ravel(), batch.vals.ravel()
    B = batch.indptr.shape[0] - 1
    Pg = P[flat_cols]  # (nnz, k+1) = [v_j | w_j]
    fv = Pg if batch.ones else flat_vals[:, None] * Pg
    fsq = np.einsum("nf,nf->n", fv[:, :k], fv[:, :k])
    if batch.cols.ndim == 2:
        m = batch.cols.shape[1]
        fv3, fsq2 = fv.reshape(B, m, k + 1), fsq.reshape(B, m)
        # Adding m contiguous slices beats a strided reduction over a short middle axis.
        per_row, sq = fv3[:, 0].copy(), fsq2[:, 0].copy()
        for j in range(1, m):
            per_row += fv3[:, j]
            sq += fsq2[:, j]
    else:
        per_row = _segment_sum(fv, batch.indptr)
        sq = _segment_sum(fsq, batch.indptr)
    s = per_row[:, :k]
    raw = w0 + per_row[:, k] + 0.5 * (np.einsum("bf,bf->b", s, s) - sq)
    per_row[:, k] = 1.0  # now [s_i | 1]: one product below yields both the V and the w gradient
    y = batch.y
    if binary:
        g = _sigmoid(raw) - y
        loss = np.sum(np.logaddexp(0.0, raw)) - np.dot(y, raw)  # log loss, stable for large |raw|
    else:
        g = raw - y
        loss = 0.5 * np.sum(g * g)
    g = (g * rescale).astype(np.float32)
    # d raw / d v_j = x_j (s - x_j v_j) and d raw / d w_j = x_j, summed per distinct column j:
    # grad[j] = sum_i a_ij [s_i | 1] - [v_j | 0] sum_i a_ij x_ij, with a_ij = g_i x_ij.
    # The a_ij in batch order form a CSC matrix (distinct columns x batch rows): no sort needed.
    rows, inv = _distinct(flat_cols, slot)
    a = np.repeat(g, batch.cols.shape[1] if batch.cols.ndim == 2 else np.diff(batch.indptr))
    if not batch.ones:
        a *= flat_vals
    grad = np.zeros((rows.shape[0], k + 1), dtype=np.float32)
    _csc_matmul(rows.shape[0], B, k + 1, batch.indptr, inv, a, per_row, grad)
    ax = np.bincount(inv, weights=a if batch.ones else a * flat_vals, minlength=rows.shape[0])
    Pr = P[rows]
    # [v_j | w_j] * (wd - [ax_j | 0]): the second-order correction and the weight decay at once
    coef = np.empty_like(grad)
    np.subtract(wd[None, :k], ax.astype(np.float32)[:, None], out=coef[:, :k])
    coef[:, k] = wd[k]
    coef *= Pr
    grad += coef
    return rows, Pr, grad, float(np.sum(g)), float(loss)


def _csc_matmul(n_rows, n_cols, n_vecs, indptr, indices, data, dense, out) -> None:
    """out += CSC(indptr, indices, data) @ dense, without scipy's per-call format checks.

    The checks cost more than the product at this size (about 0.15 ms of a 1 ms batch); scipy is
    pinned, and the public path is kept as the fallback.
    """
    if _csc_matvecs is not None:
        _csc_matvecs(n_rows, n_cols, n_vecs, indptr, indices, data, dense.ravel(), out.reshape(-1))
    else:
        out += sp.csc_matrix((data, indices, indptr), shape=(n_rows, n_cols)) @ dense


def _segment_sum(a: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    out = np.zeros((len(indptr) - 1, *a.shape[1:]), dtype=a.dtype)
    nonempty = np.flatnonzero(np.diff(indptr))
    if len(nonempty):
        out[nonempty] = np.add.reduceat(a, indptr[nonempty], axis=0)
    return out


def train(
    X: sp.csr_matrix,
    y: np.ndarray,
    config: FMConfig,
    *,
    seed: int = DEFAULT_SEED,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_params: Callable[[int, FMParams], None] | None = None,
) -> FMParams:
    """Train an FM on CSR rows X (n, feature_dim) and labels y; deterministic for a given seed.

    ``on_epoch`` gets progress after each epoch; ``on_params`` (for experiments) gets the epoch
    number and a read-only view of the current parameters.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    if not X.has_canonical_format:  # a key repeated in a record counts once, with the summed value
        X = X.copy()  # the caller's arrays stay as they were
        X.sum_duplicates()
    n, dim = X.shape
    if dim != config.feature_dim:
        raise ValueError(f"data has {dim} columns but feature_dim is {config.feature_dim}")
    y = np.asarray(y, dtype=np.float32)
    rng = np.random.default_rng(seed)
    params = init_params(config, rng)
    k = config.num_factors
    P = np.concatenate([params.V, params.w[:, None]], axis=1)
    lr = np.array([config.factors_lr] * k + [config.linear_lr], dtype=np.float32)
    wd = np.array([config.factors_wd] * k + [config.linear_wd], dtype=np.float32)
    eps = config.eps if config.eps is not None else _ADAM_EPS
    table = _LazyAdam(dim, lr, eps, config.clip_gradient)
    bias = _ScalarAdam(config.bias_lr, config.bias_wd, eps, config.clip_gradient)
    w0 = params.w0
    nnz = np.diff(X.indptr)
    uniform = n > 0 and bool(np.all(nnz == nnz[0])) and nnz[0] > 0
    ones = bool(np.all(X.data == 1.0))
    slot = np.zeros(dim, dtype=np.int32)
    bs = config.mini_batch_size
    binary = config.predictor_type == BINARY
    t = 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        perm = rng.permutation(n)
        if uniform:
            m = int(nnz[0])
            cols_all = X.indices.reshape(n, m)[perm]
            vals_all = X.data.reshape(n, m)[perm]
            step_ptr = np.arange(0, (bs + 1) * m, m, dtype=np.int32)
        else:
            Xp = X[perm]
        y_perm = y[perm]
        total = 0.0
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            if uniform:
                cols, vals, indptr = cols_all[start:stop], vals_all[start:stop], step_ptr[: stop - start + 1]
            else:
                lo, hi = Xp.indptr[start], Xp.indptr[stop]
                cols, vals = Xp.indices[lo:hi], Xp.data[lo:hi]
                indptr = (Xp.indptr[start : stop + 1] - lo).astype(np.int32)
            batch = _Batch(cols, vals, indptr, y_perm[start:stop], ones)
            # MXNet Module's default: the batch's summed gradient is scaled by 1 / batch size.
            rescale = config.rescale_grad if config.rescale_grad is not None else 1.0 / (stop - start)
            rows, Pr, grad, g0, loss = _batch_grad(P, k, w0, batch, binary, slot, rescale, wd)
            total += loss
            t += 1
            if len(rows):
                table.step(P, rows, Pr, grad, t)
            w0 = bias.step(w0, g0, t)
        if on_epoch is not None:
            report = EpochReport(epoch, config.epochs, total / max(n, 1), time.perf_counter() - started, n)
            on_epoch(report)
        if not uniform:
            del Xp  # the epoch's shuffled copy: released before the next one is built
        if on_params is not None:  # experiments: a view of the parameters after each epoch
            on_params(epoch, FMParams(w0=float(w0), w=P[:, k], V=P[:, :k]))
    return FMParams(w0=float(w0), w=P[:, k].copy(), V=np.ascontiguousarray(P[:, :k]))
