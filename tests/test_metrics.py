"""The metric functions on tensors whose answer is known, and against plain numpy definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normlab.science.metrics import (
    ACTIVATION_METRICS,
    act_sq_mean,
    act_var,
    all_metrics,
    cos_sim,
    cos_sim_centered,
    effective_rank,
    grad_norm,
    gram_spectrum,
    gram_stats,
    metrics_from_stats,
    numerical_rank,
    stable_rank,
    stack_stats,
)


def orthogonal_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """n mutually orthogonal samples in R^d with different lengths."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, n, generator=gen, dtype=torch.float64))  # (d, n)
    lengths = torch.linspace(0.5, 3.0, n, dtype=torch.float64)
    return (q.T * lengths[:, None]).float()  # (n, d)


def rank_k(n: int, d: int, k: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=gen) @ torch.randn(k, d, generator=gen)


# ---------------------------------------------------------------------------------------------
# Known answers


def test_orthogonal_samples_have_zero_cosine_and_full_stable_rank():
    x = orthogonal_rows(8, 32)
    assert cos_sim(x) == pytest.approx(0.0, abs=1e-6)
    assert stable_rank(x) == pytest.approx(8.0, rel=1e-5)
    assert gram_spectrum(x) == pytest.approx(np.ones(8), abs=1e-5)


def test_identical_samples_have_cosine_one_and_rank_one():
    v = torch.randn(1, 4, 3, 3)
    x = v.expand(6, -1, -1, -1).contiguous()
    assert cos_sim(x) == pytest.approx(1.0)
    assert stable_rank(x) == pytest.approx(1.0)
    # no spread around the batch mean: the centered metrics see a zero matrix
    assert cos_sim_centered(x) == 1.0
    assert numerical_rank(x) == 0.0
    assert effective_rank(x) == 0.0
    assert gram_spectrum(x) == pytest.approx([6, 0, 0, 0, 0, 0], abs=1e-9)


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_rank_k_features_have_numerical_rank_k(k):
    assert numerical_rank(rank_k(24, 40, k)) == k


def test_numerical_rank_counts_only_singular_values_above_tolerance():
    # centered singular values 1, 1e-2, 1e-4 (samples +-a e1, +-b e2, +-c e3)
    rows = []
    for i, s in enumerate([1.0, 1e-2, 1e-4]):
        e = torch.zeros(3)
        e[i] = s
        rows += [e, -e]
    x = torch.stack(rows)
    assert numerical_rank(x, tol=1e-3) == 2
    assert numerical_rank(x, tol=1e-5) == 3
    assert numerical_rank(x, tol=0.5) == 1


def test_effective_rank_of_equal_spread_over_k_axes_is_k():
    k = 5
    eye = torch.eye(k)
    x = torch.cat([eye, -eye])  # covariance proportional to I_k
    assert effective_rank(x) == pytest.approx(k, rel=1e-9)
    assert numerical_rank(x) == k


def test_effective_rank_of_isotropic_gaussian_is_close_to_the_dimension():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(800, 8, generator=gen)
    assert effective_rank(x) == pytest.approx(8, rel=0.02)  # sampling error ~ D/N
    # with fewer samples than dimensions the centered rank is N - 1
    y = torch.randn(10, 500, generator=gen)
    assert numerical_rank(y) == 9
    assert 8.0 < effective_rank(y) <= 9.0


def test_centered_cosine_of_symmetric_pairs_is_minus_one_over_n_minus_one():
    # centered samples summing to zero with equal norms: sum_ij u_i.u_j = 0 exactly
    x = torch.cat([torch.eye(3), -torch.eye(3)]) + 5.0
    assert cos_sim_centered(x) == pytest.approx(-1 / 5)


def test_channel_statistics_match_their_definition():
    gen = torch.Generator().manual_seed(2)
    scale = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    shift = torch.tensor([0.0, 1.0, -2.0]).view(1, 3, 1, 1)
    x = torch.randn(5, 3, 4, 4, generator=gen) * scale + shift
    per_channel = x.double().transpose(0, 1).reshape(3, -1).numpy()
    assert act_var(x) == pytest.approx(per_channel.var(axis=1).mean(), rel=1e-12)
    assert act_sq_mean(x) == pytest.approx((per_channel.mean(axis=1) ** 2).mean(), rel=1e-12)
    flat = torch.randn(7, 5, generator=gen)  # (N, C): statistics over N only
    assert act_var(flat) == pytest.approx(flat.double().numpy().var(axis=0).mean(), rel=1e-12)


def test_similarities_and_ranks_match_numpy_definitions():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(12, 4, 5, 5, generator=gen).relu() + 0.1
    f = x.double().reshape(12, -1).numpy()
    u = f / np.linalg.norm(f, axis=1, keepdims=True)
    m = u @ u.T
    off = ~np.eye(12, dtype=bool)
    assert cos_sim(x) == pytest.approx(m[off].mean(), rel=1e-10)
    assert stable_rank(x) == pytest.approx(np.trace(m) / np.linalg.norm(m, 2), rel=1e-10)
    assert gram_spectrum(x) == pytest.approx(np.sort(np.linalg.eigvalsh(m))[::-1], abs=1e-10)
    c = f - f.mean(axis=0)
    uc = c / np.linalg.norm(c, axis=1, keepdims=True)
    assert cos_sim_centered(x) == pytest.approx((uc @ uc.T)[off].mean(), rel=1e-9)
    s = np.linalg.svd(c, compute_uv=False)
    p = s**2 / (s**2).sum()
    assert effective_rank(x) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert numerical_rank(x) == np.sum(s > 1e-3 * s[0])


def test_centered_metrics_survive_a_mean_that_dominates_the_spread():
    # a rank-3 spread of size 1 around a mean of size 1e4 (cos_sim ~ 1, as deep in an unnormalized net)
    spread = rank_k(32, 64, 3, seed=4)
    x = spread + 1e4 * torch.ones(64)
    assert cos_sim(x) == pytest.approx(1.0, abs=1e-6)
    assert numerical_rank(x) == 3
    assert effective_rank(x) == pytest.approx(effective_rank(spread - spread.mean(0)), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Degenerate and non-finite inputs


def test_all_zero_features_are_a_collapsed_batch_not_a_nan():
    x = torch.zeros(8, 16)  # InstanceNorm on (N, C) then ReLU gives exactly this
    values = all_metrics(x)
    assert values["cos_sim"] == 1.0
    assert values["cos_sim_centered"] == 1.0
    assert values["stable_rank"] == pytest.approx(1.0, abs=1e-12)  # exact up to the BLAS's last bit
    assert values["effective_rank"] == 0.0
    assert values["numerical_rank"] == 0.0
    assert values["act_var"] == 0.0
    assert all(math.isfinite(v) for v in values.values())


def test_a_zero_sample_has_cosine_zero_with_the_others():
    x = torch.ones(3, 4)
    x[0] = 0.0
    # pairs: (0,1) and (0,2) have cosine 0, (1,2) cosine 1 -> mean over 6 ordered pairs = 2/6
    assert cos_sim(x) == pytest.approx(1 / 3)
    assert stable_rank(x) == pytest.approx(3 / 2)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_inputs_give_non_finite_values_without_raising(bad):
    x = torch.randn(6, 3, 2, 2)
    x[2, 1, 0, 0] = bad
    values = all_metrics(x)
    for name in ("cos_sim", "cos_sim_centered", "stable_rank", "effective_rank", "numerical_rank"):
        assert math.isnan(values[name]), name
    assert not math.isfinite(values["act_var"])
    for fn in (cos_sim, cos_sim_centered, stable_rank, effective_rank, numerical_rank):
        assert math.isnan(fn(x))
    assert np.isnan(gram_spectrum(x)).all()


def test_large_finite_activations_stay_finite_in_float64():
    x = torch.randn(6, 5).clamp(-1, 1) * 3e38  # near float32's maximum: squares only fit in float64
    assert torch.isfinite(x).all()
    values = all_metrics(x)
    assert all(math.isfinite(v) for v in values.values())
    assert values["act_var"] > 1e75


# ---------------------------------------------------------------------------------------------
# The batched path agrees with the one-at-a-time definitions


def test_batched_metrics_equal_the_single_metric_functions():
    gen = torch.Generator().manual_seed(5)
    tensors = [torch.randn(10, 3, 4, 4, generator=gen).relu() * s + s for s in (0.5, 1.0, 4.0)]
    tensors.append(torch.zeros(10, 3, 4, 4))
    stacked = metrics_from_stats(stack_stats([gram_stats(t) for t in tensors]), spectrum=True)
    single = {"act_var": act_var, "act_sq_mean": act_sq_mean, "cos_sim": cos_sim,
              "cos_sim_centered": cos_sim_centered, "stable_rank": stable_rank,
              "effective_rank": effective_rank, "numerical_rank": numerical_rank}
    assert set(single) == set(ACTIVATION_METRICS)
    for k, t in enumerate(tensors):
        for name, fn in single.items():
            assert float(stacked[name][k]) == pytest.approx(fn(t), rel=1e-9, abs=1e-12), name
        assert stacked["gram_eigenvalue"][k].numpy() == pytest.approx(gram_spectrum(t), abs=1e-9)


def test_grad_norm_is_the_frobenius_norm_over_the_batch():
    g = torch.randn(4, 3, 2, 2)
    assert grad_norm(g) == pytest.approx(float(g.double().pow(2).sum().sqrt()), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 12),
    d=st.integers(1, 20),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    shift=st.sampled_from([0.0, 1.0, 100.0]),
)
def test_metric_ranges_hold_for_any_batch(n, d, seed, scale, shift):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen) * scale + shift
    v = all_metrics(x)
    assert 1.0 - 1e-9 <= v["stable_rank"] <= n + 1e-9
    assert -1.0 - 1e-9 <= v["cos_sim"] <= 1.0 + 1e-9
    assert -1.0 - 1e-9 <= v["cos_sim_centered"] <= 1.0 + 1e-9
    assert 0 <= v["numerical_rank"] <= min(n - 1, d)
    assert 0 <= v["effective_rank"] <= min(n - 1, d) + 1e-9
    assert v["act_var"] >= 0
