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

METRICS = (
    "act_var",
    "act_sq_mean",
    "res_var",
    "cos_sim",
    "cos_sim_centered",
    "stable_rank",
    "effective_rank",
    "numerical_rank",
    "grad_norm",
    "gram_eigenvalue",
)
# The metrics of an activation tensor ("act" and "block" probe points), in frame order.
ACTIVATION_METRICS = (
    "act_var",
    "act_sq_mean",
    "cos_sim",
    "cos_sim_centered",
    "stable_rank",
    "effective_rank",
    "numerical_rank",
)
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

    def float64(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` copied into the buffer as float64, shaped like ``x``; valid until the next call."""
        device = _stats_device(x)
        n = x.numel()
        if self._buffer is None or self._buffer.numel() < n or self._buffer.device != device:
            self._buffer = torch.empty(n, dtype=torch.float64, device=device)
        out = self._buffer[:n].view(x.shape)
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
    """(act_var, act_sq_mean) of ``x`` as float64 0-dim tensors."""
    with torch.no_grad():
        x64 = _as_ncs(x, workspace)  # (N, C, S)
        mean = x64.mean(dim=(0, 2), keepdim=True)  # (1, C, 1)
        x64 -= mean  # two-pass variance: no cancellation when the mean dominates
        var = torch.linalg.vector_norm(x64, dim=(0, 2)).square() / (x64.shape[0] * x64.shape[2])  # (C,)
    return var.mean(), mean.square().mean()


def act_var(x: torch.Tensor) -> float:
    """Per-channel variance over (N, H, W), averaged over channels (population variance, ddof=0)."""
    return float(channel_stats(x)[0])


def act_sq_mean(x: torch.Tensor) -> float:
    """Per-channel mean over (N, H, W), squared, averaged over channels."""
    return float(channel_stats(x)[1])


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

    Every field has a leading stack dimension once stacked with :func:`stack_stats`.
    """

    act_var: torch.Tensor  # () per-channel variance averaged over channels
    act_sq_mean: torch.Tensor  # () squared per-channel mean averaged over channels
    gram: torch.Tensor  # (N, N) uncentered Gram X X^T
    sq_norms: torch.Tensor  # (N,) |x_i|^2, exactly 0 for zero samples
    gram_centered: torch.Tensor  # (N, N) Gram of the samples minus their batch mean
    finite: torch.Tensor  # () bool: every activation was finite

    @property
    def zero(self) -> torch.Tensor:
        return self.sq_norms == 0

    @property
    def zero_centered(self) -> torch.Tensor:
        diag = torch.diagonal(self.gram_centered, dim1=-2, dim2=-1)
        return diag <= _ZERO_REL * self.sq_norms


def gram_stats(x: torch.Tensor, workspace: Workspace | None = None) -> GramStats:
    """The sufficient statistics of activations ``x`` (N, C, *spatial) or (N, C), in float64.

    One N x N matrix product, on the centered samples: the uncentered Gram is rebuilt from it by adding
    the mean terms, which is exact to rounding, whereas centering an uncentered Gram cancels
    catastrophically when the mean dominates (deep unnormalized nets, cos_sim near 1).
    """
    with torch.no_grad():
        x64 = _as_ncs(x, workspace)  # (N, C, S), a float64 copy
        n, _, s = x64.shape
        mean = x64.mean(dim=0)  # (C, S): the batch-mean sample
        x64 -= mean  # centred in place: one copy of the activations, not two
        centered = x64.view(n, -1)  # (N, D)
        m = mean.reshape(-1)  # (D,)
        gram_c = centered @ centered.T  # (N, N)
        proj = centered @ m  # (N,)
        m_sq = m.dot(m)
        gram = gram_c + proj[:, None] + proj[None, :] + m_sq  # (N, N)
        diag_c = torch.diagonal(gram_c)
        sq_norms = (diag_c + 2 * proj + m_sq).clamp_min(0.0)  # (N,) |x_i|^2
        # |x_i|^2 from the Gram is exact to rounding; whether a sample is exactly zero is decided on
        # the activations themselves, for the few samples whose norm is lost in that rounding.
        maybe_zero = sq_norms <= 1e-12 * (diag_c + m_sq)
        if bool(maybe_zero.any()):
            flat = x.detach().reshape(n, -1)
            exact = (flat[maybe_zero.to(flat.device)] == 0).all(dim=1).to(sq_norms.device)
            sq_norms[maybe_zero] = torch.where(exact, 0.0, sq_norms[maybe_zero])
        # Channel statistics by the law of total variance: within-position + between-position parts.
        within = torch.linalg.vector_norm(x64, dim=(0, 2)).square() / (n * s)  # (C,)
        between, ch_mean = torch.var_mean(mean, dim=1, unbiased=False)  # (C,), (C,)
        finite = torch.isfinite(m).all()  # an inf or NaN anywhere makes its column mean non-finite
    return GramStats((within + between).mean(), ch_mean.square().mean(), gram, sq_norms, gram_c, finite)


def stack_stats(stats: list[GramStats]) -> GramStats:
    """Stack the statistics of several tensors of the same batch size (on one device)."""
    assert stats, "nothing to stack"
    return GramStats(*(torch.stack([getattr(s, f.name) for s in stats]) for f in fields(GramStats)))


def metrics_from_stats(stats: GramStats, tol: float = DEFAULT_RANK_TOL, spectrum: bool = False) -> dict:
    """Every activation metric of (possibly stacked) statistics, with one batched eigensolve.

    Returns:
        A dict metric name -> float64 tensor of the stack's shape; with ``spectrum`` also
        ``"gram_eigenvalue"`` -> (..., N) eigenvalues of the normalized Gram, descending.
    """
    m = normalized_gram(stats.gram, stats.sq_norms, stats.zero)
    m_c = normalized_gram(stats.gram_centered, torch.diagonal(stats.gram_centered, dim1=-2, dim2=-1),
                          stats.zero_centered)
    # A batch without any spread is the zero matrix after centering: ranks 0 (module doc).
    spread = ~stats.zero_centered.all(-1)
    gram_c = torch.where(spread[..., None, None], stats.gram_centered, 0.0)
    eig = _safe_eigvalsh(torch.stack([m, gram_c]))  # (2, ..., N) ascending
    eig_m, eig_c = eig[0], eig[1]
    nan_if_bad = lambda t: torch.where(stats.finite, t, torch.nan)  # noqa: E731
    out = {
        "act_var": stats.act_var,
        "act_sq_mean": stats.act_sq_mean,
        "cos_sim": nan_if_bad(mean_off_diagonal(m)),
        "cos_sim_centered": nan_if_bad(mean_off_diagonal(m_c)),
        "stable_rank": nan_if_bad(stable_rank_from_eigenvalues(eig_m)),
        "effective_rank": nan_if_bad(effective_rank_from_eigenvalues(eig_c)),
        "numerical_rank": nan_if_bad(numerical_rank_from_eigenvalues(eig_c, tol)),
    }
    if spectrum:
        out["gram_eigenvalue"] = torch.where(stats.finite[..., None], eig_m.flip(-1), torch.nan)
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
