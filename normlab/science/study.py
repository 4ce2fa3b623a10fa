"""The study's statistics: one row per run, Spearman's rho of init similarity against training speed.

Pure pandas and numpy over finished runs (normlab.science.training); the runs themselves are trained
by the guarded ``normlab.run_study`` (normlab.ops.run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from normlab.core import catalog
from normlab.core.config import MAX_SEED, ModelConfig, check_int, check_real, choices
from normlab.core.train_config import MAX_BOOT, SPEED_METRICS, StudyConfig
from normlab.science.summary import as_numbers, spearman
from normlab.science.training import TrainResult, final_metric

# ---------------------------------------------------------------------------------------------
# Rank correlation


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable = spearman,
                 n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)``, resampling the (x, y) pairs.

    Resamples on which the statistic is undefined (e.g. a constant side) are left out; with none left
    the interval is (NaN, NaN).
    """
    check_int("n_boot", n_boot, 1, MAX_BOOT)
    check_real("confidence", confidence, 0.0, 1.0, open_low=True, open_high=True)
    if not callable(statistic):
        raise ValueError(f"statistic must be a function statistic(x, y) -> float; "
                         f"got {type(statistic).__name__}")
    check_int("seed", seed, 0, MAX_SEED)
    x, y = as_numbers("x", x), as_numbers("y", y)
    if len(x) != len(y):
        raise ValueError(f"bootstrap_ci needs x and y of equal length; got {len(x)} and {len(y)}")
    if len(x) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)

    def resample() -> float:
        p = rng.integers(0, len(x), size=len(x))  # one at a time: the draws of an (n_boot, n) array, O(n)
        value = statistic(x[p], y[p])
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"statistic must return a number; got {value!r}") from None

    stats = np.array([resample() for _ in range(n_boot)])
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def variant_label(model_config: ModelConfig) -> str:
    """A normalizer's label, with its group count where it has one: 'GroupNorm (G=4)'."""
    label = catalog.label(model_config.norm)
    return f"{label} (G={model_config.groups})" if model_config.groups is not None else label


@dataclass(frozen=True)
class StudyResult:
    """The study's tidy frames.

    Attributes:
        config: the study that ran.
        runs: one row per (arch, norm, groups, seed): ``label``, init similarity (``cos_sim_init``,
            ``cos_sim_centered_init``, ``stable_rank_init``), training speed (``acc_at_k``,
            ``steps_to_target``), ``final_test_acc``, ``diverged``, gradient ranges and the config.
        correlations: one row per (arch, speed): Spearman's ``rho`` of ``cos_sim_init`` against the speed
            measure, its bootstrap interval ``lo``/``hi`` and the number of runs ``n``; arch 'all' pools
            the architectures. The paper predicts rho < 0 for acc_at_k and rho > 0 for steps_to_target.
        curves: the training curves of every run, concatenated (``label`` added).
        stopped: ``should_stop`` ended the study early; only finished runs are in the frames.
    """

    config: StudyConfig
    runs: pd.DataFrame
    correlations: pd.DataFrame
    curves: pd.DataFrame
    stopped: bool = False


def study_row(result: TrainResult, k_steps: int) -> dict:
    """One run's row of the study frame."""
    mc, tc = result.model_config, result.train_config
    return {
        "arch": mc.arch,
        "norm": mc.norm,
        "groups": mc.groups,
        "seed": tc.seed,
        "label": variant_label(mc),
        "cos_sim_init": result.init_cos_sim,
        "cos_sim_centered_init": final_metric(result.probes_init, "cos_sim_centered"),
        "stable_rank_init": final_metric(result.probes_init, "stable_rank"),
        "k_steps": k_steps,
        "acc_at_k": result.test_acc_at(k_steps),
        "steps_to_target": result.steps_to_target,
        "final_test_acc": result.final_test_acc,
        "diverged": result.diverged,
        "grad_growth_init": result.grad_growth_init,
        "grad_range_init": result.grad_range_init,
        "grad_range_after": result.grad_range_after,
        "seconds": result.seconds,
        **{k: v for k, v in mc.to_dict().items() if k not in ("arch", "norm", "groups")},
    }


def speed_for_ranking(runs: pd.DataFrame, speed: str) -> np.ndarray:
    """A speed column made rankable: diverged runs and unreached targets rank as the slowest, tied.

    acc_at_k of a diverged run becomes -inf; steps_to_target NaN (never reached) becomes +inf.
    """
    if speed not in SPEED_METRICS:
        raise ValueError(f"Unknown speed measure {speed!r}; expected one of {choices(SPEED_METRICS)}")
    values = runs[speed].to_numpy(dtype=np.float64).copy()
    worst = -np.inf if speed == "acc_at_k" else np.inf
    values[np.isnan(values)] = worst
    return values


def correlate(runs: pd.DataFrame, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
              x: str = "cos_sim_init") -> pd.DataFrame:
    """Spearman's rho of ``x`` against each speed measure, per arch and pooled, with bootstrap intervals."""
    rows = []
    groups = [(arch, runs[runs["arch"] == arch]) for arch in runs["arch"].unique()]
    if len(groups) > 1:
        groups.append(("all", runs))
    for arch, part in groups:
        part = part[np.isfinite(part[x].to_numpy(dtype=np.float64))]
        for speed in SPEED_METRICS:
            xs, ys = part[x].to_numpy(dtype=np.float64), speed_for_ranking(part, speed)
            lo, hi = bootstrap_ci(xs, ys, spearman, n_boot=n_boot, confidence=confidence, seed=seed)
            rows.append({"arch": arch, "x": x, "speed": speed, "rho": spearman(xs, ys), "lo": lo, "hi": hi,
                         "n": len(part), "confidence": confidence})
    return pd.DataFrame(rows, columns=["arch", "x", "speed", "rho", "lo", "hi", "n", "confidence"])


def assemble_study(config: StudyConfig, results: Sequence[TrainResult], stopped: bool = False) -> StudyResult:
    """The study's frames from finished runs (all of them, or those done before a stop)."""
    runs = pd.DataFrame([study_row(r, config.k_steps) for r in results])
    if runs.empty:  # stopped before the first run finished
        runs = pd.DataFrame(columns=["arch", "norm", "groups", "seed", "label", "cos_sim_init",
                                     *SPEED_METRICS, "diverged"])
    correlations = correlate(runs, config.n_boot, config.confidence, config.seed)
    curves = [r.curve.assign(label=variant_label(r.model_config)) for r in results]
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return StudyResult(config, runs, correlations, curves, stopped)
