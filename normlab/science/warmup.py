"""The warm-up study's statistics: Post-LN against Pre-LN, with and without learning-rate warm-up.

Xiong et al. (ICML 2020) show that Post-LN's gradients near the output are large at init, so Adam at
its peak rate from the first step derails it, and a warm-up is needed; Pre-LN's are even across depth
and it trains without one. This module turns finished runs (normlab.science.training) into one row per
run, one row per arm (placement x warm-up) and a verdict on what this machine's small runs show. Pure
pandas; the runs are trained by the guarded ``normlab.run_warmup_study`` (normlab.ops.run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from normlab.core.train_config import WarmupStudyConfig
from normlab.science.training import TrainResult

RUN_COLUMNS = ["placement", "warmup_steps", "seed", "lr", "final_test_loss", "final_test_bpb",
               "diverged", "steps_done", "seconds"]
ARM_COLUMNS = ["placement", "warmup_steps", "runs", "diverged", "loss_mean", "loss_min", "loss_max",
               "bpb_mean", "bpb_min", "bpb_max"]
SCALE_NOTE = ("a small-scale check (a byte-level model of a few hundred thousand bytes, a few hundred "
              "steps on a CPU), not the paper's experiment (Xiong et al. 2020 trained translation and BERT "
              "models for tens of thousands of steps)")


def warmup_row(result: TrainResult) -> dict:
    """One run's row: its arm, seed, peak rate and final held-out loss (NaN if it diverged)."""
    mc, tc = result.model_config, result.train_config
    return {"placement": mc.placement, "warmup_steps": tc.warmup_steps, "seed": tc.seed, "lr": tc.lr,
            "final_test_loss": result.final_test_loss, "final_test_bpb": result.final_test_bpb,
            "diverged": result.diverged, "steps_done": result.steps_done, "seconds": result.seconds}


def arm_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (placement, warmup_steps): runs, diverged runs, and the final held-out loss and bits
    per byte over the seeds that did not diverge (mean, min, max; NaN when all diverged)."""
    if runs.empty:
        return pd.DataFrame(columns=ARM_COLUMNS)
    rows = []
    for (placement, warmup), arm in runs.groupby(["placement", "warmup_steps"], sort=False):
        loss = arm["final_test_loss"].to_numpy(dtype=np.float64)
        ok = loss[np.isfinite(loss)]
        bpb = ok / math.log(2)
        stats = ((ok.mean(), ok.min(), ok.max(), bpb.mean(), bpb.min(), bpb.max()) if ok.size
                 else (math.nan,) * 6)
        rows.append((placement, int(warmup), len(arm), int(arm["diverged"].sum()), *stats))
    return pd.DataFrame(rows, columns=ARM_COLUMNS)


@dataclass(frozen=True)
class WarmupVerdict:
    """What the runs show. ``post_needs_warmup``: True when every Post-LN run without warm-up ends worse
    (or diverged) than every Post-LN run with the longest warm-up; False when not; None when an arm is
    missing. ``pre_trains_without``: Pre-LN without warm-up ends within the warmed-up Post-LN's range or
    better (None when missing). ``text``: the sentence a page or the CLI shows."""

    post_needs_warmup: bool | None
    pre_trains_without: bool | None
    text: str


def _span(arm: pd.Series) -> str:
    runs, diverged = int(arm["runs"]), int(arm["diverged"])
    if not np.isfinite(arm["loss_min"]):
        return f"diverged in all {runs} runs"
    lost = f"; {diverged} of {runs} runs diverged" if diverged else ""
    return (f"{arm['loss_min']:.3f}–{arm['loss_max']:.3f} nats "
            f"({arm['bpb_min']:.2f}–{arm['bpb_max']:.2f} bits/byte{lost})")


def _worst(runs: pd.DataFrame) -> np.ndarray:
    """Final held-out losses, a diverged run counted as infinitely bad."""
    loss = runs["final_test_loss"].to_numpy(dtype=np.float64)
    return np.where(np.isfinite(loss), loss, np.inf)


def warmup_verdict(runs: pd.DataFrame) -> WarmupVerdict:
    """Compare the arms of a warm-up study's runs (``warmup_row`` rows).

    Post-LN without warm-up is "worse" only when its ranges over the seeds and the warmed-up Post-LN's do
    not overlap (every seed); overlapping ranges are no effect at this scale. The text states the ranges,
    the peak rate and that this is a small-scale check.
    """
    missing = [c for c in ("placement", "warmup_steps", "final_test_loss", "diverged") if c not in runs]
    if missing:
        raise ValueError(f"runs must be warmup_row rows; missing columns {missing}")
    post, pre = runs[runs["placement"] == "post"], runs[runs["placement"] == "pre"]
    longest = int(post["warmup_steps"].max()) if len(post) else 0
    post0, post_k = post[post["warmup_steps"] == 0], post[post["warmup_steps"] == longest]
    pre0 = pre[pre["warmup_steps"] == 0]
    if post0.empty or longest == 0:
        return WarmupVerdict(None, None, "The verdict needs Post-LN runs with and without warm-up "
                                         "(placements post, warmups 0 and K > 0).")
    table = arm_table(runs).set_index(["placement", "warmup_steps"])
    rate = ", ".join(f"{lr:g}" for lr in sorted(runs["lr"].unique())) if "lr" in runs else "?"
    a, b = _worst(post0), _worst(post_k)
    needs = bool(a.min() > b.max())
    if needs:
        head = (f"Post-LN without warm-up ends worse than with a {longest}-step warm-up in every seed: "
                f"{_span(table.loc[('post', 0)])} against {_span(table.loc[('post', longest)])}")
    elif b.min() > a.max():
        head = (f"Post-LN without warm-up ends better than with a {longest}-step warm-up: "
                f"{_span(table.loc[('post', 0)])} against {_span(table.loc[('post', longest)])}")
    else:
        head = (f"Post-LN with and without a {longest}-step warm-up overlap over the seeds: "
                f"{_span(table.loc[('post', 0)])} against {_span(table.loc[('post', longest)])}; no effect "
                f"shows at this scale")
    pre_ok = None
    if not pre0.empty:
        pre_ok = bool(_worst(pre0).max() <= b.max())
        head += (f". Pre-LN without warm-up: {_span(table.loc[('pre', 0)])}, "
                 + ("as good as the warmed-up Post-LN or better" if pre_ok
                    else "worse than the warmed-up Post-LN"))
    agree = needs and pre_ok is not False
    tail = " This agrees with" if agree else " This does not reproduce"
    tail += " Xiong et al. (2020)"
    return WarmupVerdict(needs, pre_ok, f"{head} (peak rate {rate}, {len(runs)} runs).{tail}; "
                                        f"it is {SCALE_NOTE}.")


@dataclass(frozen=True)
class WarmupStudyResult:
    """The warm-up study's frames: ``runs`` (warmup_row), ``arms`` (arm_table), every run's training
    ``curves`` (``placement`` and ``warmup_steps`` columns), the ``verdict``; ``stopped``: ended early."""

    config: WarmupStudyConfig
    runs: pd.DataFrame
    arms: pd.DataFrame
    curves: pd.DataFrame
    verdict: WarmupVerdict
    stopped: bool = False


def assemble_warmup(config: WarmupStudyConfig, results: Sequence[TrainResult],
                    stopped: bool = False) -> WarmupStudyResult:
    """The study's frames from finished runs (all of them, or those done before a stop)."""
    runs = pd.DataFrame([warmup_row(r) for r in results], columns=RUN_COLUMNS)
    curves = [r.curve for r in results]
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return WarmupStudyResult(config, runs, arm_table(runs), curves, warmup_verdict(runs), stopped)
