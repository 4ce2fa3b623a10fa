"""One definition of each number read off a probe frame: gradient growth and range, final value, growth.

The CLI's sweep table, every dashboard page (through ``ui.figures.measures``), the claims and the training
study call these functions, so the same network reads the same everywhere. Pure numpy/pandas over the tidy
frames of ``normlab.run_probes``; no torch, no UI. docs/probes.md states each definition.

* **gradient growth**: ``grad_norm`` at the first conv/linear output over the one at the last hidden
  layer before the classifier, both averaged over seeds first. The head is left out (its
  dL/dz is the loss's own gradient, softmax minus one-hot), and so are exact zeros (every conv inside a
  SkipInit branch at init). Above 1 the gradient grows toward the input. NaN when an end overflowed.
* **gradient range**: max/min of the same layers' ``grad_norm`` (seed means); the training study reports it.
* **final value** of a metric: its mean over the rows flagged ``final`` (the final features, before
  pooling), else at the last point along depth.
* **growth per block**: least-squares slopes of the values (linear) and of their logarithms
  (exponential) along depth, fitted within each ResNet stage (one slope shared by the stages, each stage
  its own intercept), so the reset a normalized projection shortcut causes is not read as a decline. The
  verdict is "linear", "exponential growth", "exponential decay" or "flat".
* **w2_grad_last** (transformers): ``weight_grad_norm`` of the last block's ``ffn.w2``, ‖∂L/∂W₂‖_F of
  ``blocks.{L-1}.ffn.w2``, averaged over seeds.
* **depth slope** (transformers): the least-squares slope of log(w2_grad_last) against log(depth) over
  every (depth, seed) point of a depth sweep, per combination of the other swept fields; ``slope_sd`` is
  the standard deviation of the same slope fitted seed by seed (Xiong et al. 2020 expect 0 for post-LN,
  -1/2 for pre-LN).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from normlab.core import catalog
from normlab.core.config import ModelConfig, ProbeConfig, check_items

# Yang et al. (2019): with BatchNorm + ReLU the gradient grows by sqrt(pi / (pi - 1)) per layer toward
# the input, at large width and batch.
BN_GRAD_RATE = math.sqrt(math.pi / (math.pi - 1))  # ~1.2112
HEAD = "head"  # the classifier's layer name in normlab's networks (normlab.science.models.Net.head)


# --- Gradients --------------------------------------------------------------------------------------------


def hidden_gradients(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``grad_norm`` rows of the hidden conv/linear outputs of one run, in forward order.

    The classifier is the layer named ``head``; a network without one (``probe_module`` on a foreign
    module) loses its last conv/linear output instead, which is its classifier in forward order.
    """
    rows = frame[(frame["metric"] == "grad_norm") & (frame["kind"] == "conv")]
    rows = rows.sort_values("index", kind="stable")
    if (rows["layer"] == HEAD).any():
        return rows[rows["layer"] != HEAD]
    last = rows["index"].max() if len(rows) else None
    return rows[rows["index"] != last]


def _nonzero(values) -> np.ndarray:
    g = np.asarray(values, dtype=np.float64)
    return g[g != 0]  # exact zeros: SkipInit branches carry no gradient at init


def growth_of_gradients(values: Sequence[float]) -> float:
    """Gradient growth of one seed: first / last of the hidden layers' ``grad_norm`` in forward order.

    ``values`` leave out the head; exact zeros are skipped. NaN with fewer than two nonzero layers or
    where either end is not finite (an overflow is shown as one, never divided).
    """
    g = _nonzero(values)
    if g.size < 2:
        return math.nan
    first, last = g[0], g[-1]
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0 or first <= 0:
        return math.nan
    return float(first / last)


def range_of_gradients(values: Sequence[float]) -> float:
    """Gradient range of one seed: max / min of the hidden layers' ``grad_norm`` (zeros skipped).

    NaN with fewer than two nonzero layers or when any of them overflowed.
    """
    g = _nonzero(values)
    if g.size < 2 or not np.all(np.isfinite(g)) or np.any(g < 0):
        return math.nan
    return float(g.max() / g.min())


def layer_means(rows: pd.DataFrame, value: str = "value") -> np.ndarray:
    """Seed mean of ``value`` per layer (``index``) in forward order; a NaN seed keeps the mean NaN."""
    if rows.empty:
        return np.zeros(0)
    means = rows.groupby("index", sort=True)[value].agg(lambda v: v.mean(skipna=False))
    return means.to_numpy(dtype=float)


def gradient_growth(frame: pd.DataFrame, value: str = "value") -> float:
    """Gradient growth of one network: first / last hidden ``grad_norm``, on the seed means per layer.

    ``value`` names the column: ``value`` in a probe frame (all seeds of one network), ``mean`` in its
    summary; both give the same number.
    """
    return growth_of_gradients(layer_means(hidden_gradients(frame), value))


def gradient_range(frame: pd.DataFrame, value: str = "value") -> float:
    """Gradient range of one network: max / min over the same layers, on the seed means per layer."""
    return range_of_gradients(layer_means(hidden_gradients(frame), value))


# --- The last block's weight gradient against depth (transformers) ---------------------------------------

W2_GRAD_LAST = "w2_grad_last"  # the sweep table's column
_W2_LAYER = re.compile(r"blocks\.(\d+)\.ffn\.w2")
# The fields a frame row carries as columns: a sweep's groups are the ones that vary (seed is per row).
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig)) + tuple(
    f.name for f in dataclasses.fields(ProbeConfig) if f.name not in ("seed", "seeds"))


def last_w2_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``weight_grad_norm`` rows of the last block's ``ffn.w2``: one per seed and network of a frame
    (each row's own ``depth`` says which block is last; without that column, the highest)."""
    rows = frame[(frame["metric"] == "weight_grad_norm")]
    block = rows["layer"].astype(str).str.fullmatch(_W2_LAYER.pattern)
    rows = rows[block]
    if rows.empty:
        return rows
    number = rows["layer"].str.extract(_W2_LAYER.pattern, expand=False).astype(int)
    # a sweep's frame holds several depths: each network's last block is depth - 1
    last = rows["depth"].astype(int) - 1 if "depth" in rows.columns else number.max()
    return rows[number == last]


def w2_grad_last(frame: pd.DataFrame) -> float:
    """‖∂L/∂W₂‖_F of one transformer's last block, mean over seeds (NaN without an FFN or on overflow)."""
    values = last_w2_rows(frame)["value"]
    return float(values.mean(skipna=False)) if len(values) else math.nan


def _log_slope(depths: np.ndarray, values: np.ndarray) -> float:
    if len(np.unique(depths)) < 2 or not (np.isfinite(values).all() and (values > 0).all()):
        return math.nan
    return float(np.polyfit(np.log(depths), np.log(values), 1)[0])


def depth_slopes(frame: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The log-log slope of the last block's ‖∂L/∂W₂‖_F against depth in a depth sweep's frame.

    Args:
        frame: the tidy frame of ``run_sweep`` over ``depth`` (and any other fields).
        keys: the columns that tell the sweep's curves apart; None: every config field but depth whose
            values differ in the frame (placement, norm, ...).

    Returns:
        One row per curve: the keys, ``depths`` (e.g. "6,12,24"), ``seeds``, ``slope`` (over every
        (depth, seed) point) and ``slope_sd`` (over per-seed slopes; NaN with one seed). A curve with fewer
        than two depths, or a value that overflowed or is 0, has slope NaN.
    """
    if keys is None:
        keys = [k for k in CONFIG_FIELDS if k != "depth" and k in frame.columns
                and frame[k].astype(str).nunique() > 1]
    keys = list(keys)
    rows = last_w2_rows(frame)
    out = []
    groups = rows.groupby(keys, sort=False, dropna=False) if keys else [((), rows)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        depths = part["depth"].to_numpy(dtype=np.float64)
        values = part["value"].to_numpy(dtype=np.float64)
        per_seed = [_log_slope(p["depth"].to_numpy(dtype=np.float64), p["value"].to_numpy(dtype=np.float64))
                    for _, p in part.groupby("seed", sort=True)]
        per_seed = np.asarray(per_seed, dtype=np.float64)
        sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan
        out.append({**dict(zip(keys, key, strict=True)),
                    "depths": ",".join(str(int(d)) for d in sorted(set(part["depth"]))),
                    "seeds": int(part["seed"].nunique()), "slope": _log_slope(depths, values),
                    "slope_sd": sd})
    return pd.DataFrame(out, columns=[*keys, "depths", "seeds", "slope", "slope_sd"])


# --- Final values -----------------------------------------------------------------------------------------


def trunk_kind(frame: pd.DataFrame) -> str:
    """Probe kind that follows the network's depth: residual block outputs, else the act points."""
    return "block" if (frame["kind"] == "block").any() else "act"


def final_rows(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of ``metric`` at the final features: flagged ``final``, else the last trunk point."""
    rows = frame[frame["metric"] == metric]
    final = rows[rows["final"].fillna(False).astype(bool)] if "final" in rows else rows.iloc[0:0]
    if final.empty and len(rows):
        trunk = rows[rows["kind"] == trunk_kind(rows)]
        final = trunk[trunk["index"] == trunk["index"].max()]
    return final


def final_value(frame: pd.DataFrame, metric: str, value: str = "value") -> float:
    """The final value of ``metric`` for one network: the mean of its final rows (over seeds); NaN if none.

    ``value`` names the column to read: ``value`` in a probe frame, ``mean`` in a summary.
    """
    rows = final_rows(frame, metric)
    if rows.empty:
        return math.nan
    values = rows[value].to_numpy(dtype=float)
    return float(values.mean()) if np.all(np.isfinite(values)) else math.nan


# --- Growth along depth -----------------------------------------------------------------------------------

LINEAR, EXP_GROWTH, EXP_DECAY, FLAT, UNKNOWN = ("linear", "exponential growth", "exponential decay", "flat",
                                                "unknown")
# A ratio per block within this factor of 1 is no exponential, and a total change under this fraction of
# the level is flat.
_EXP_RATIO = 1.2
_FLAT = 0.1


@dataclass(frozen=True)
class Growth:
    """How a quantity grows along depth, fitted within each stage."""

    per_block: float  # least-squares slope of the values against depth, within stages
    ratio: float  # exp of the slope of the log values: the geometric growth per block
    shape: str  # LINEAR, EXP_GROWTH, EXP_DECAY, FLAT or UNKNOWN
    stages: int = 1  # stages the fit was taken within

    def short(self) -> str:
        """A few characters for a metric card: ``+0.31/block`` or ``×2.1/block``."""
        if self.shape == UNKNOWN:
            return "—"
        if self.shape in (EXP_GROWTH, EXP_DECAY):
            return f"×{self.ratio:.3g}/block"
        return "flat" if self.shape == FLAT else f"{self.per_block:+.2f}/block"

    def describe(self) -> str:
        if self.shape == UNKNOWN:
            return "growth unknown (overflow or too few points)"
        within = f" within each of {self.stages} stages" if self.stages > 1 else ""
        if self.shape in (EXP_GROWTH, EXP_DECAY):
            return f"×{self.ratio:.3g} per block{within}: {self.shape}"
        if self.shape == FLAT:
            return f"flat{within}"
        return f"{self.per_block:+.3g} per block{within}: linear"


def _within_slope(x: np.ndarray, y: np.ndarray, stage: np.ndarray) -> tuple[float, np.ndarray]:
    """One slope shared by the stages, each its own intercept: (slope, fitted values)."""
    xc, yc = x.copy(), y.copy()
    for s in np.unique(stage):
        at = stage == s
        xc[at] -= x[at].mean()
        yc[at] -= y[at].mean()
    denom = float(xc @ xc)
    slope = float(xc @ yc) / denom if denom > 0 else 0.0
    return slope, (y - yc) + slope * xc  # stage mean + slope * (x - stage mean of x)


def growth(values: Sequence[float], stages: Sequence[int] | None = None) -> Growth:
    """Classify the growth of a positive series along depth (one value per block or layer, in order).

    Args:
        values: the series, forward order.
        stages: the stage of every value (ResNet stages, whose first block a normalized projection shortcut
            resets); None: one stage. Stages of a single point carry no slope and are left out.

    Linear and exponential growth are told apart by which fits better: a line through the values or a line
    through their logarithms (residuals compared on the log scale). A ratio per block within 1.2 of 1 is
    not exponential; a total change under 10% of the level reads as flat.
    """
    y = np.asarray(values, dtype=float)
    stage = np.zeros(y.size, dtype=int) if stages is None else np.asarray(stages, dtype=int)
    assert stage.shape == y.shape, f"{stage.size} stage ids for {y.size} values"
    counts = pd.Series(stage).value_counts()
    keep = np.isin(stage, counts[counts >= 2].index.to_numpy())
    y, stage = y[keep], stage[keep]
    if y.size < 3 or not np.all(np.isfinite(y)) or np.any(y <= 0):
        return Growth(math.nan, math.nan, UNKNOWN)
    x = np.arange(y.size, dtype=float)
    n_stages = int(np.unique(stage).size)
    slope, linear_fit = _within_slope(x, y, stage)
    log_slope, log_fit = _within_slope(x, np.log(y), stage)
    ratio = math.exp(log_slope)
    longest = int(counts.max()) - 1  # steps within the longest stage
    level = min(float(y[stage == s].mean()) for s in np.unique(stage))
    if abs(slope) * longest < _FLAT * level and abs(ratio**longest - 1) < _FLAT:
        return Growth(slope, ratio, FLAT, n_stages)
    exponential = ratio > _EXP_RATIO or ratio < 1 / _EXP_RATIO
    if exponential and np.any(linear_fit <= 0):
        return Growth(slope, ratio, EXP_GROWTH if ratio > 1 else EXP_DECAY, n_stages)
    linear_err = np.mean((np.log(y) - np.log(np.maximum(linear_fit, np.finfo(float).tiny))) ** 2)
    log_err = np.mean((np.log(y) - log_fit) ** 2)
    if exponential and log_err < linear_err:
        return Growth(slope, ratio, EXP_GROWTH if ratio > 1 else EXP_DECAY, n_stages)
    return Growth(slope, ratio, LINEAR, n_stages)


def stage_ids(rows: pd.DataFrame) -> np.ndarray:
    """The stage of every block-level row of a residual net (``index`` counts blocks; ``depth`` blocks a
    stage). Plain networks, and rows without the config columns, are one stage.
    """
    zero = np.zeros(len(rows), dtype=int)
    if rows.empty or "arch" not in rows or "depth" not in rows:
        return zero
    info = catalog.ARCHITECTURES.get(rows["arch"].iloc[0])
    if info is None or not info.residual:
        return zero
    if rows["kind"].iloc[0] not in ("block", "res"):
        return zero
    depth = rows["depth"].iloc[0]
    if depth is None or (isinstance(depth, float) and math.isnan(depth)) or int(depth) < 1:
        return zero
    return rows["index"].to_numpy(dtype=int) // int(depth)


def depth_growth(rows: pd.DataFrame, value: str = "value") -> Growth:
    """:func:`growth` of one run's rows of a metric along depth (one kind, one seed or seed means)."""
    rows = rows.sort_values("index", kind="stable")
    return growth(rows[value].to_numpy(dtype=float), stage_ids(rows))


# --- Rank correlation -------------------------------------------------------------------------------------


def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``values``, ties sharing their average rank (scipy's 'average' method).

    Infinite values rank like any other number (+inf last), which is how unreached targets enter.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Run boundaries of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


# Values of one statistic's sample (spearman, bootstrap_ci): far more than a study's runs.
MAX_SAMPLES = 1_000_000


def as_numbers(name: str, values) -> np.ndarray:
    """``values`` as a 1-D float64 array; anything but a list (or array) of numbers is refused by name.

    A list is read no further than MAX_SAMPLES + 1 entries, so a huge range is refused, not expanded.
    """
    if not hasattr(values, "__array__"):  # an array, a Series or a tensor is already in memory
        values = check_items(name, values, MAX_SAMPLES)
    shown = type(values).__name__
    try:
        raw = np.asarray(values)
        shown = f"{raw.ndim}-D {raw.dtype}"
        # object entries may be numbers (None reads as NaN); strings and complex numbers are none
        out = raw.astype(np.float64, copy=False) if raw.ndim == 1 and raw.dtype.kind in "biufO" else None
    except (TypeError, ValueError):  # ragged nesting, an object that is no number
        out = None
    if out is None:
        raise ValueError(f"{name} must be a one-dimensional list of numbers; got {shown}")
    if out.size > MAX_SAMPLES:
        raise ValueError(f"{name} must list at most {MAX_SAMPLES:,} values; got {out.size:,}")
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks.

    Returns NaN for fewer than two pairs, for any NaN input, or when either side is constant.
    """
    x, y = as_numbers("x", x), as_numbers("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must be of equal length; got {len(x)} and {len(y)}")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denom if denom > 0 else math.nan
