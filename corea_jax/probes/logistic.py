"""L2-regularised logistic regression on hidden-state features, C chosen by cross-validation.

The model: p(correct | x) = sigmoid(w . (x - mean) / scale + b), with mean and scale the
training rows' feature mean and std (std floored at `SCALE_FLOOR`, so a constant feature
standardises to 0 and gets no weight). The fit minimises

    mean_i logloss(y_i, z_i) + ||w||^2 / (2 C N)

over N training rows, the bias unpenalised: the same optimum as scikit-learn's
`LogisticRegression(C=C)` on standardised features (C * sum of losses + ||w||^2 / 2, divided by
C N), so C reads as there: small C = strong regularisation.

Solver: full-batch L-BFGS (`optax.lbfgs`, zoom line search) from w = 0 and b = the logit of the
training positive rate, in a `lax.while_loop` until the gradient norm is below `TOL` or
`MAX_ITER` steps; float32, deterministic. The whole cross-validation (folds x C grid) is one
jitted, vmapped call: each fit sees all N rows with 0/1 row weights, so no per-fold copies of
the features are made, and its standardisation is folded into the weights
(x @ (w / scale) - mean . (w / scale)) so it never materialises a standardised [N, D] per fit.

Cross-validation: stratified k folds, assigned on the host from `seed` (each class permuted,
then dealt round-robin, the second class continuing where the first stopped, so fold sizes
differ by at most one). Per C, the score is the mean log-loss over all N held-out predictions
(each row is held out exactly once). Ties go to the smaller C (stronger regularisation). The
fits on all N rows, one per C, run in the same call as the k x C CV fits (one compile instead
of two; (k + 1) / k the compute), and the chosen C's is kept.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from corea_jax.errors import CoreaError

SCALE_FLOOR = 1e-6
MAX_ITER = 300
TOL = 1e-5
PROB_EPS = 1e-12
DEFAULT_C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 11))


@dataclasses.dataclass(frozen=True, eq=False)
class Probe:
    """A fitted probe. Arrays are float64 [D] (mean and scale as computed on the host, weight
    as fitted in float32); `weight` applies to standardised features.

    cv_table: C -> cross-validated mean held-out log-loss, for every C of the grid.
    n_train: rows of the final fit; positive_rate: their fraction of True labels.
    """

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float
    c: float
    cv_table: dict[float, float]
    n_train: int
    positive_rate: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        """features [N, D] -> float64 logits [N]."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.weight.shape[0]:
            raise CoreaError(
                f"probe: features have shape {x.shape}, the probe expects [N, "
                f"{self.weight.shape[0]}]"
            )
        return ((x - self.mean) / self.scale) @ self.weight + float(self.bias)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """features [N, D] -> float64 [N] P(correct), clipped to [1e-12, 1 - 1e-12] so it stays
        inside (0, 1) (and log-losses finite) even for saturated logits."""
        z = self.logits(features)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
        return np.clip(p, PROB_EPS, 1.0 - PROB_EPS)

    @property
    def direction(self) -> np.ndarray:
        """[D] float64 unit vector: the weight in raw feature space (weight / scale)."""
        v = self.weight / self.scale
        return v / max(np.linalg.norm(v), 1e-300)


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [N, D] -> (mean [D], scale [D]) in float64: the column std floored at SCALE_FLOOR."""
    x = np.asarray(x, np.float64)
    return x.mean(axis=0), np.maximum(x.std(axis=0), SCALE_FLOOR)


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """labels [N] bool -> fold index [N] int in [0, folds): each class spread evenly."""
    rng = np.random.default_rng(seed)
    fold = np.empty(labels.shape[0], np.int64)
    offset = 0
    for cls in (False, True):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        fold[idx] = (np.arange(idx.size) + offset) % folds
        offset += idx.size
    return fold


def group_folds(groups, folds: int, seed: int) -> np.ndarray:
    """groups [N] (question ids, say) -> fold index [N]: whole groups dealt to folds in a
    seeded random order, so a group's rows never straddle a fold."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    order = np.random.default_rng(seed).permutation(names.size)
    return (np.argsort(order) % folds)[index]


def cv_folds(labels: np.ndarray, folds: int, seed: int, groups=None) -> np.ndarray:
    """Stratified folds, or group folds when `groups` has a repeated name."""
    if groups is None or len(set(groups)) == len(groups):
        return stratified_folds(labels, folds, seed)
    return group_folds(groups, folds, seed)


def _minimise(fun, init, max_iter: int, tol: float):
    """L-BFGS on `fun(params)` from `init` until |grad| < tol or max_iter steps."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    def keep_going(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad_norm = otu.tree_norm(otu.tree_get(state, "grad"))
        return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

    return jax.lax.while_loop(keep_going, step, (init, opt.init(init)))[0]


def _fit_one(x, y, train, mean, scale, c, max_iter, tol):
    """One fit. x [N, D], y [N] float 0/1, train [N] float 0/1 (the rows fitted on), mean and
    scale [D] (this fit's standardisation of x), c scalar -> (w [D], b, held-out loss sum)."""
    n = jnp.sum(train)
    prior = jnp.clip(jnp.sum(train * y) / n, 1e-6, 1 - 1e-6)

    def logits(params):
        w, b = params
        v = w / scale
        return x @ v + (b - mean @ v)

    def losses(params):
        z = logits(params)
        return jax.nn.softplus(z) - y * z  # [N] log-loss per row, stable for any z

    def objective(params):
        w, _ = params
        return jnp.sum(train * losses(params)) / n + jnp.sum(w * w) / (2.0 * c * n)

    init = (jnp.zeros(x.shape[1], jnp.float32), jnp.log(prior) - jnp.log1p(-prior))
    params = _minimise(objective, init, max_iter, tol)
    held_out = jnp.sum((1.0 - train) * losses(params))
    return params[0], params[1], held_out


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit_many(x, y, train, mean, scale, c, *, max_iter, tol):
    """x [N, D], y [N]; per fit (axis M): train [M, N], mean, scale [M, D], c [M] ->
    w [M, D], b [M], held-out loss sums [M]."""
    fit = functools.partial(_fit_one, max_iter=max_iter, tol=tol)
    return jax.vmap(fit, in_axes=(None, None, 0, 0, 0, 0))(x, y, train, mean, scale, c)


def _check(features, labels, c_grid, folds) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated float64 features [N, D], bool labels [N] and the number of folds to use."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise CoreaError(f"probe: features {x.shape} and labels {y.shape} must be [N, D] and [N]")
    if y.dtype != bool:
        if not np.all((y == 0) | (y == 1)):
            raise CoreaError("probe: labels must be bool (or 0/1)")
        y = y.astype(bool)
    if not np.all(np.isfinite(x)):
        raise CoreaError(f"probe: {int(np.sum(~np.isfinite(x)))} feature values are not finite")
    if not c_grid or any(not c > 0 for c in c_grid):
        raise CoreaError(f"probe.c_grid={tuple(c_grid)!r}: needs one or more C > 0")
    if folds < 2:
        raise CoreaError(f"probe.folds={folds}: cross-validation needs >= 2 folds")
    positives = int(y.sum())
    minority = min(positives, y.size - positives)
    if minority == 0:
        raise CoreaError(
            f"probe: all {y.size} labels are {bool(positives)}; a probe needs both correct and "
            "incorrect examples"
        )
    if minority < 2:
        raise CoreaError(
            f"probe: only {minority} example of the minority class among {y.size}; "
            "cross-validation needs >= 2 of each class"
        )
    return x, y, min(folds, minority)


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    folds: int = 5,
    seed: int = 0,
    groups=None,
) -> Probe:
    """features [N, D], labels [N] bool (True = correct) -> a `Probe`, C chosen by stratified
    `folds`-fold CV mean log-loss over `c_grid` (default 11 values, 1e-3 .. 1e2, half-decade
    steps), then refitted on all N rows.

    `groups` [N] (question ids when each question has several sampled answers): a group's rows
    share a fold (`group_folds`), so C is not chosen by scoring rows whose question the fit saw.

    With fewer than `folds` examples of a class, CV uses that many folds instead (at least 2);
    a class with fewer than 2 examples, or all labels equal, raises a CoreaError.
    """
    x, y, k = _check(features, labels, c_grid, folds)
    n, d = x.shape
    grid = np.asarray(sorted(float(c) for c in c_grid), np.float64)
    # Centre and scale once on the host in float64: hidden states have a few dimensions with
    # huge means, which would cancel badly in float32; each fold restandardises this.
    mean, scale = standardisation(x)
    xs = ((x - mean) / scale).astype(np.float32)
    yf = y.astype(np.float32)

    fold = cv_folds(y, k, seed, groups)
    # Fit f < k trains on the rows outside fold f; fit k on all rows (the refit), restandardised
    # by nothing: xs already has mean 0 and std 1 there.
    train = np.stack([fold != f for f in range(k)] + [np.ones(n, bool)]).astype(np.float32)
    fold_mean = np.stack([xs[t > 0].mean(0, dtype=np.float64) for t in train[:k]] + [np.zeros(d)])
    fold_scale = np.stack(
        [np.maximum(xs[t > 0].std(0, dtype=np.float64), SCALE_FLOOR) for t in train[:k]]
        + [np.ones(d)]
    )
    m = len(grid)
    w, b, held_out = _fit_many(
        jnp.asarray(xs),
        jnp.asarray(yf),
        jnp.asarray(np.repeat(train, m, axis=0)),
        jnp.asarray(np.repeat(fold_mean, m, axis=0), jnp.float32),
        jnp.asarray(np.repeat(fold_scale, m, axis=0), jnp.float32),
        jnp.asarray(np.tile(grid, k + 1), jnp.float32),
        max_iter=MAX_ITER,
        tol=TOL,
    )
    cv_loss = np.asarray(held_out, np.float64).reshape(k + 1, m)[:k].sum(axis=0) / n  # [C]
    best = int(np.argmin(cv_loss))  # first minimum: the smallest such C
    w = np.asarray(w, np.float64).reshape(k + 1, m, d)[k, best]
    b = float(np.asarray(b).reshape(k + 1, m)[k, best])
    return Probe(
        mean=mean,
        scale=scale,
        weight=w,
        bias=b,
        c=float(grid[best]),
        cv_table={float(c): float(v) for c, v in zip(grid, cv_loss, strict=True)},
        n_train=n,
        positive_rate=float(y.mean()),
    )
