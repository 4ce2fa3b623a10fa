"""The metrics of spec section 3 as small pure functions: a tensor in, a number out.

Knows nothing of models, hooks or frames. Every similarity and rank metric is computed from the
N x N Gram matrix of the flattened samples, never from an SVD of the N x D features: D can be tens of
thousands while N is a batch, and the centered covariance's nonzero eigenvalues equal those of the
centered Gram (singular values of the centered features are their square roots).

All maths runs in float64 on float32 activations. Non-finite inputs give inf/NaN, never an exception.

Conventions for degenerate inputs (they do occur: InstanceNorm on (N, C) activations outputs beta, so
after a ReLU every sample is the zero vector):

* a zero sample is normalized as a unit vector along an extra axis orthogonal to all data: its cosine
  with another zero sample is 1, with any nonzero sample 0. The normalized Gram keeps a unit diagonal, so
  all-zero (or all-identical) features give ``cos_sim`` 1 and ``stable_rank`` 1: a collapsed batch.
* the centered metrics see the samples minus their batch mean; a sample equal to the mean (up to float64
  rounding, 1e-10 of its norm) counts as a zero sample. A batch without any spread has
  ``cos_sim_centered`` 1 and ``effective_rank`` = ``numerical_rank`` = 0 (the rank of a zero matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from normlab.core import catalog

# The metric names, in frame order, and those of an activation tensor ("act" and "block" probe points):
# from normlab.core.catalog, which also holds each one's title, help and probe kinds.
METRICS = catalog.METRICS
ACTIVATION_METRICS = catalog.ACTIVATION_METRICS
DEFAULT_RANK_TOL = 1e-3
# A centered sample whose squared norm is below this fraction of its uncentered squared norm equals the
# batch mean up to float64 rounding of the centering (about 1e-31 relative), far below float32 resolution.
_ZERO_REL = 1e-20
# Eigenvalues of a float64 Gram below N * this * lambda_max are rounding noise, whatever rank_tol says.
_EIG_NOISE = 64 * float(np.finfo(np.float64).eps)


def _stats_device(x: torch.Tensor) -> torch.device:
    # MPS has no float64; there the statistics move to the CPU.
    return torch.device("cpu") if x.device.type == "mps" else x.device


def as_samples(x: torch.Tensor) -> torch.Tensor:
    """Flatten each sample: (N, ...) -> (N, D), float64, detached."""
    if x.dim() == 0:
        raise ValueError("expected a batch of samples (N, ...); got a 0-dim tensor")
    x = x.detach().to(_stats_device(x), torch.float64)
    return x.reshape(x.shape[0], -1)  # (N, D)


class Workspace:
    """A reusable float64 buffer for the copies the statistics need.

    On a CPU a fresh 30 MB float64 tensor per probe point costs more in page faults than the copy
    itself; one buffer, reused from point to point, does not. Results never alias the buffer.
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def empty(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """An uninitialized float64 view of the buffer shaped ``shape``; valid until the next call."""
        n = math.prod(shape)
        if self._buffer is None or self._buffer.numel() < n or self._buffer.device != device:
            self._buffer = torch.empty(n, dtype=torch.float64, device=device)
        return self._buffer[:n].view(shape)

    def float64(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` copied into the buffer as float64, shaped like ``x``; valid until the next call."""
        out = self.empty(tuple(x.shape), _stats_device(x))
        out.copy_(x.detach())
        return out


def _as_ncs(x: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
    """A float64 copy of x (N, C, *spatial) viewed as (N, C, S); (N,) is one channel, (N, C) has S = 1."""
    if x.dim() == 0:
        raise ValueError("expected a batch of samples (N, ...); got a 0-dim tensor")
    n = x.shape[0]
    c = x.shape[1] if x.dim() > 1 else 1
    if workspace is not None:
        return workspace.float64(x).reshape(n, c, -1)
    # copy=True: callers centre the copy in place, never the network's own activation
    return x.detach().to(_stats_device(x), torch.float64, copy=True).reshape(n, c, -1)  # (N, C, S)


# ---------------------------------------------------------------------------------------------
# Channel statistics (SPP: average channel variance and squared channel mean)


def channel_stats(x: torch.Tensor, workspace: Workspace | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(act_var, act_sq_mean) of ``x`` as float64 0-dim tensors, in two passes over one float64 copy.

    The mean over channels of the per-channel variances is the total sum of squares of the
    per-channel-centered values over N * C * S, so one dot product replaces C variances.
    """
    with torch.no_grad():
        x64 = _as_ncs(x, workspace)  # (N, C, S)
        mean = x64.mean(dim=(0, 2), keepdim=True)  # (1, C, 1)
        x64 -= mean  # two-pass variance: no cancellation when the mean dominates
        flat = x64.view(-1)  # (N*C*S,)
        var = torch.dot(flat, flat) / flat.numel()
    return var, mean.square().mean()


def act_var(x: torch.Tensor) -> float:
    """Per-channel variance over (N, H, W), averaged over channels (population variance, ddof=0)."""
    return float(_as_ncs(x).var(dim=(0, 2), unbiased=False).mean())


def act_sq_mean(x: torch.Tensor) -> float:
    """Per-channel mean over (N, H, W), squared, averaged over channels."""
    return float(_as_ncs(x).mean(dim=(0, 2)).square().mean())


# ---------------------------------------------------------------------------------------------
# Gram-matrix maths; every function accepts a stack (..., N, N) as well as one matrix.


def normalized_gram(gram: torch.Tensor, sq_norms: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Cosine matrix M_ij = G_ij / (|x_i| |x_j|) with the zero-sample convention of the module doc.

    Args:
        gram: (..., N, N) Gram matrix of the samples.
        sq_norms: (..., N) squared sample norms, the Gram's exact diagonal.
        zero: (..., N) bool, which samples count as zero vectors.
    """
    inv = torch.where(zero, 0.0, sq_norms.clamp_min(torch.finfo(torch.float64).tiny).rsqrt())
    m = gram * inv[..., :, None] * inv[..., None, :]  # (..., N, N)
    both_zero = zero[..., :, None] & zero[..., None, :]
    m = torch.where(both_zero, 1.0, m)
    # The exact unit diagonal: rounding of G_ii / |x_i|^2 must not leak into traces.
    eye = torch.eye(m.shape[-1], dtype=torch.bool, device=m.device)
    return torch.where(eye, 1.0, m)


def mean_off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """Mean of the N(N-1) off-diagonal entries of (..., N, N)."""
    n = m.shape[-1]
    diag = torch.diagonal(m, dim1=-2, dim2=-1).sum(-1)
    return (m.sum(dim=(-2, -1)) - diag) / (n * (n - 1))


def _safe_eigvalsh(m: torch.Tensor) -> torch.Tensor:
    """Eigenvalues, ascending, of symmetric (..., N, N); NaN for matrices with non-finite entries."""
    finite = torch.isfinite(m).all(dim=-1).all(dim=-1)  # (...)
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    clean = torch.where(finite[..., None, None], m, eye)  # eigh would fail to converge on NaN
    eig = torch.linalg.eigvalsh(clean)
    return torch.where(finite[..., None], eig, torch.nan)


def stable_rank_from_eigenvalues(eig: torch.Tensor) -> torch.Tensor:
    """tr(M) / ||M||_2 from the eigenvalues (..., N) of a PSD matrix M."""
    eig = eig.clamp_min(0.0)
    return eig.sum(-1) / eig.amax(-1)


def effective_rank_from_eigenvalues(eig: torch.Tensor) -> torch.Tensor:
    """exp of the entropy of the normalized eigenvalues (..., N); 0 for a zero matrix."""
    eig = eig.clamp_min(0.0)
    total = eig.sum(-1, keepdim=True)
    p = eig / total.clamp_min(torch.finfo(torch.float64).tiny)
    entropy = -torch.where(p > 0, p * p.clamp_min(torch.finfo(torch.float64).tiny).log(), 0.0).sum(-1)
    return torch.where(total[..., 0] > 0, entropy.exp(), 0.0)


def numerical_rank_from_eigenvalues(eig: torch.Tensor, tol: float = DEFAULT_RANK_TOL) -> torch.Tensor:
    """Singular values sqrt(eig) above tol * sigma_max, counted; eig are Gram eigenvalues (..., N).

    The cut never goes below the float64 rounding noise of a Gram matrix (N * 64 eps * lambda_max).
    """
    eig = eig.clamp_min(0.0)
    top = eig.amax(-1, keepdim=True)
    cut = top * max(tol * tol, eig.shape[-1] * _EIG_NOISE)
    count = ((eig > cut) & (top > 0)).sum(-1).to(torch.float64)
    return torch.where(torch.isnan(eig).any(-1), torch.nan, count)


# ---------------------------------------------------------------------------------------------
# Sufficient statistics of one activation tensor, and every metric from them in one batched pass


@dataclass
class GramStats:
    """What the metrics of one activation tensor need: O(C + N^2) numbers instead of N x D.

    The uncentered Gram is not stored: X X^T = G_c + p 1^T + 1 p^T + |m|^2 1 1^T with the centered
    Gram G_c, the projections p = (X - 1 m^T) m and the batch-mean sample m. Every field has a leading
    stack dimension once stacked with :func:`stack_stats`.
    """

    act_var: torch.Tensor  # () per-channel variance averaged over channels
    act_sq_mean: torch.Tensor  # () squared per-channel mean averaged over channels
    gram_centered: torch.Tensor  # (N, N) Gram of the samples minus their batch mean
    proj: torch.Tensor  # (N,) each centered sample's dot product with the batch-mean sample
    mean_sq: torch.Tensor  # () |m|^2 of the batch-mean sample
    sq_norms: torch.Tensor  # (N,) |x_i|^2, exactly 0 for zero samples
    finite: torch.Tensor  # () bool: every activation was finite

    @property
    def gram(self) -> torch.Tensor:
        """(..., N, N) the uncentered Gram X X^T, rebuilt from the centered one."""
        p = self.proj
        return self.gram_centered + p[..., :, None] + p[..., None, :] + self.mean_sq[..., None, None]

    @property
    def zero(self) -> torch.Tensor:
        return self.sq_norms == 0

    @property
    def zero_centered(self) -> torch.Tensor:
        diag = torch.diagonal(self.gram_centered, dim1=-2, dim2=-1)
        return diag <= _ZERO_REL * self.sq_norms


# On a CPU the Gram is multiplied in row panels from the diagonal on, the rest mirrored: with four
# panels that is 5/8 of a full product's flops, which measured about 20% faster at N = 128.
_GRAM_PANELS = 4
_GRAM_MIN_PANEL_ROWS = 32


def self_gram(a: torch.Tensor) -> torch.Tensor:
    """A A^T of a (R, D) matrix.

    On a GPU one product is fastest; on a CPU the product is compute-bound, so only the panels on and
    above the diagonal are multiplied and the rest is mirrored.
    """
    r = a.shape[0]
    panels = min(_GRAM_PANELS, r // _GRAM_MIN_PANEL_ROWS)
    if a.device.type != "cpu" or panels < 2:
        return a @ a.T  # (R, R)
    rows = -(-r // panels)
    g = a.new_empty(r, r)
    for i in range(0, r, rows):
        j = min(i + rows, r)
        block = a[i:j] @ a[i:].T  # (j - i, R - i): block row i from the diagonal on
        g[i:j, i:] = block
        g[j:, i:j] = block[:, j - i:].T
    return g


def gram_stats(x: torch.Tensor, workspace: Workspace | None = None) -> GramStats:
    """The sufficient statistics of activations ``x`` (N, C, *spatial) or (N, C), in float64.

    One product of [X - 1 m^T; m] with itself, m the batch-mean sample: it gives the centered Gram, the
    projections on m and |m|^2 at once. Centering first keeps the centered Gram exact to rounding when
    the mean dominates (deep unnormalized nets, cos_sim near 1), where centering an uncentered Gram
    would cancel catastrophically. The channel statistics come from the same numbers: the mean over
    channels of the within-position variances is trace(G_c) / (N * D).
    """
    if x.dim() == 0:
        raise ValueError("expected a batch of samples (N, ...); got a 0-dim tensor")
    with torch.no_grad():
        n = x.shape[0]
        c = x.shape[1] if x.dim() > 1 else 1
        d = math.prod(x.shape[1:])
        rows = (workspace or Workspace()).empty((n + 1, d), _stats_device(x))  # (N+1, D)
        x64, mean = rows[:n], rows[n]
        x64.copy_(x.detach().reshape(n, d))
        torch.mean(x64, dim=0, out=mean)  # (D,) the batch-mean sample
        x64 -= mean  # centred in place: one float64 copy of the activations, not two
        g = self_gram(rows)  # (N+1, N+1) = [[G_c, p], [p^T, |m|^2]]
        gram_c, proj, m_sq = g[:n, :n], g[:n, n], g[n, n]
        diag_c = torch.diagonal(gram_c)  # (N,)
        sq_norms = (diag_c + 2 * proj + m_sq).clamp_min(0.0)  # (N,) |x_i|^2
        # |x_i|^2 from the Gram is exact to rounding; whether a sample is exactly zero is decided on
        # the activations themselves, for the few samples whose norm is lost in that rounding.
        maybe_zero = sq_norms <= 1e-12 * (diag_c + m_sq)
        flat = x.detach().reshape(n, -1)
        if sq_norms.device.type == "cpu":
            if bool(maybe_zero.any()):  # rare, and a CPU has nothing to synchronize
                exact = (flat[maybe_zero.to(flat.device)] == 0).all(dim=1).to(sq_norms.device)
                sq_norms[maybe_zero] = torch.where(exact, 0.0, sq_norms[maybe_zero])
        else:  # on a GPU a pass over the activations is cheaper than a host round trip
            exact = (flat == 0).all(dim=1).to(sq_norms.device)
            sq_norms = torch.where(maybe_zero & exact, 0.0, sq_norms)
        # Channel statistics by the law of total variance: within-position + between-position parts.
        between, ch_mean = torch.var_mean(mean.view(c, -1), dim=1, unbiased=False)  # (C,), (C,)
        var = diag_c.sum() / (n * d) + between.mean()
        finite = torch.isfinite(m_sq)  # an inf or NaN anywhere makes its column mean non-finite
    return GramStats(var, ch_mean.square().mean(), gram_c, proj, m_sq, sq_norms, finite)


def stack_stats(stats: list[GramStats]) -> GramStats:
    """Stack the statistics of several tensors of the same batch size (on one device)."""
    assert stats, "nothing to stack"
    return GramStats(*(torch.stack([getattr(s, f.name) for s in stats]) for f in fields(GramStats)))


def _eigvalsh_where(mats: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Eigenvalues, ascending, of symmetric (..., N, N), in place of ``mats``'s content; NaN where not ``ok``.

    eigh fails to converge on NaN, so the matrices that are not ``ok`` are swapped for the identity.
    """
    if mats.device.type != "cpu" or not bool(ok.all()):  # on a CPU, skip a pass when all are fine
        eye = torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device)
        torch.where(ok[..., None, None], mats, eye, out=mats)
    eig = torch.linalg.eigvalsh(mats)
    return torch.where(ok[..., None], eig, torch.nan)


def metrics_from_stats(stats: GramStats, tol: float = DEFAULT_RANK_TOL, spectrum: bool = False) -> dict:
    """Every activation metric of (possibly stacked) statistics, with one batched eigensolve.

    The matrices are built straight into the eigensolver's input, and cos_sim_centered comes from a
    quadratic form instead of a normalized matrix: a few passes over the N x N stack, not a dozen.

    Returns:
        A dict metric name -> float64 tensor of the stack's shape; with ``spectrum`` also
        ``"gram_eigenvalue"`` -> (..., N) eigenvalues of the normalized Gram, descending.
    """
    shape = stats.act_var.shape
    n = stats.gram_centered.shape[-1]
    tiny = torch.finfo(torch.float64).tiny
    gram_c = stats.gram_centered.reshape(-1, n, n)  # (B, N, N)
    sq_norms, proj = stats.sq_norms.reshape(-1, n), stats.proj.reshape(-1, n)  # (B, N)
    finite = stats.finite.reshape(-1)  # (B,)
    diag_c = torch.diagonal(gram_c, dim1=-2, dim2=-1)  # (B, N)
    zero, zero_c = sq_norms == 0, diag_c <= _ZERO_REL * sq_norms  # (B, N)
    mats = gram_c.new_empty((2, *gram_c.shape))  # (2, B, N, N): the normalized Gram and G_c
    # M_ij = a_i a_j (G_c,ij + p_i + p_j + |m|^2) = a_i a_j G_c,ij + b_i a_j + a_i b_j with
    # a = 1/|x|, b = a (p + |m|^2 / 2); a zero sample has a = 0 and z = 1: z_i z_j is the cosine of
    # two zero samples (module doc).
    a = torch.where(zero, 0.0, sq_norms.clamp_min(tiny).rsqrt())  # (B, N)
    b = a * (proj + stats.mean_sq.reshape(-1, 1) / 2)
    z = zero.to(torch.float64)
    m = torch.mul(gram_c, a[:, :, None], out=mats[0])
    m.mul_(a[:, None, :]).baddbmm_(torch.stack([b, a, z], dim=2), torch.stack([a, b, z], dim=1))
    m.diagonal(dim1=-2, dim2=-1).fill_(1.0)  # exact: rounding of G_ii / |x_i|^2 must not leak
    m_sum = m.sum(dim=(-2, -1))  # (B,)
    cos = (m_sum - n) / (n * (n - 1))
    # The centered cosine's off-diagonal sum: a_c^T G_c a_c minus its diagonal, plus 1 per ordered
    # pair of samples without spread.
    a_c = torch.where(zero_c, 0.0, diag_c.clamp_min(tiny).rsqrt())  # (B, N)
    quad = (a_c[:, None, :] @ gram_c @ a_c[:, :, None])[:, 0, 0]  # (B,)
    k = zero_c.sum(-1).to(torch.float64)
    cos_c = (quad - (diag_c * a_c.square()).sum(-1) + k * k - k) / (n * (n - 1))
    # A batch without any spread is the zero matrix after centering: ranks 0 (module doc).
    spread = ~zero_c.all(-1)
    torch.where(spread[:, None, None], gram_c, gram_c.new_zeros(()), out=mats[1])
    ok = torch.stack([finite & torch.isfinite(m_sum), finite & torch.isfinite(diag_c.sum(-1))])  # (2, B)
    eig = _eigvalsh_where(mats, ok)  # (2, B, N) ascending
    eig_m, eig_c = eig[0], eig[1]
    nan_if_bad = lambda t: torch.where(finite, t, torch.nan).reshape(shape)  # noqa: E731
    out = {
        "act_var": stats.act_var,
        "act_sq_mean": stats.act_sq_mean,
        "cos_sim": nan_if_bad(cos),
        "cos_sim_centered": nan_if_bad(cos_c),
        "stable_rank": nan_if_bad(stable_rank_from_eigenvalues(eig_m)),
        "effective_rank": nan_if_bad(effective_rank_from_eigenvalues(eig_c)),
        "numerical_rank": nan_if_bad(numerical_rank_from_eigenvalues(eig_c, tol)),
    }
    if spectrum:
        out["gram_eigenvalue"] = torch.where(finite[:, None], eig_m.flip(-1), torch.nan).reshape(*shape, n)
    return out


def all_metrics(x: torch.Tensor, tol: float = DEFAULT_RANK_TOL) -> dict[str, float]:
    """Every activation metric of ``x`` (N, ...) at once: one Gram, one eigensolve."""
    return {k: float(v) for k, v in metrics_from_stats(gram_stats(x), tol).items()}


# ---------------------------------------------------------------------------------------------
# One metric at a time: the public, readable definitions (each builds only what it needs)


def _gram(x: torch.Tensor, centered: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = as_samples(x)  # (N, D)
    sq_norms = flat.square().sum(dim=1)  # (N,)
    if centered:
        c = flat - flat.mean(dim=0)
        g = c @ c.T
        diag = torch.diagonal(g)
        return g, diag, diag <= _ZERO_REL * sq_norms
    return flat @ flat.T, sq_norms, sq_norms == 0


def _finite_or_nan(x: torch.Tensor, value: torch.Tensor) -> float:
    return float(value) if bool(torch.isfinite(x).all()) else math.nan


def cos_sim(x: torch.Tensor) -> float:
    """Mean off-diagonal cosine similarity of the flattened samples (uncentered, the paper's code)."""
    g, diag, zero = _gram(x, centered=False)
    return _finite_or_nan(x, mean_off_diagonal(normalized_gram(g, diag, zero)))


def cos_sim_centered(x: torch.Tensor) -> float:
    """:func:`cos_sim` after subtracting the batch-mean vector; 1 for a batch without spread."""
    g, diag, zero = _gram(x, centered=True)
    return _finite_or_nan(x, mean_off_diagonal(normalized_gram(g, diag, zero)))


def stable_rank(x: torch.Tensor) -> float:
    """tr(M) / ||M||_2 of the normalized (cosine) Gram matrix M, in [1, N]."""
    g, diag, zero = _gram(x, centered=False)
    return _finite_or_nan(x, stable_rank_from_eigenvalues(_safe_eigvalsh(normalized_gram(g, diag, zero))))


def _centered_eigenvalues(x: torch.Tensor) -> torch.Tensor:
    g, _, zero = _gram(x, centered=True)
    return _safe_eigvalsh(torch.where(zero.all(), 0.0, g))


def effective_rank(x: torch.Tensor) -> float:
    """exp of the entropy of the normalized eigenvalues of the centered feature covariance."""
    return _finite_or_nan(x, effective_rank_from_eigenvalues(_centered_eigenvalues(x)))


def numerical_rank(x: torch.Tensor, tol: float = DEFAULT_RANK_TOL) -> float:
    """Number of singular values of the centered features above ``tol`` * sigma_max."""
    return _finite_or_nan(x, numerical_rank_from_eigenvalues(_centered_eigenvalues(x), tol))


def gram_spectrum(x: torch.Tensor) -> np.ndarray:
    """Eigenvalues of the normalized N x N Gram matrix (they sum to N), descending; NaN if non-finite."""
    g, diag, zero = _gram(x, centered=False)
    eig = _safe_eigvalsh(normalized_gram(g, diag, zero)).flip(-1)
    if not bool(torch.isfinite(x).all()):
        eig = torch.full_like(eig, math.nan)
    return eig.cpu().numpy()


def frobenius_norm(x: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
    """|x|_F as a float64 0-dim tensor (in float32 the sum of squares loses digits and overflows)."""
    with torch.no_grad():
        if workspace is not None:
            return torch.linalg.vector_norm(workspace.float64(x))
        return torch.linalg.vector_norm(x.detach().to(_stats_device(x), torch.float64))


def grad_norm(grad: torch.Tensor) -> float:
    """Frobenius norm over the whole batch of a gradient dL/dz, in float64."""
    return float(frobenius_norm(grad))
