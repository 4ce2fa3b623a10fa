"""Training speed: does the final-layer similarity at init predict how fast a network trains on the digits?

Each run is cached on its own (frozen configs), so a stopped study resumes where it stopped and a plot
option never retrains. The figure builders at the top are pure: DataFrame in, Figure out.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from normlab import NORMALIZERS
from normlab.config import divisors
from normlab.serving import compute
from normlab.training import (
    StudyConfig,
    TrainConfig,
    TrainResult,
    correlate,
    run_training,
    study_row,
    variant_label,
)
from ui import views
from ui.figures import norm_color

ARCH_SYMBOLS = {"cnn": "circle", "resnet": "diamond", "mlp": "square"}
ARCH_LABELS = {"cnn": "plain CNN", "resnet": "ResNet", "mlp": "MLP", "all": "both nets pooled"}
SPEEDS = {"acc_at_k": "held-out accuracy after k steps", "steps_to_target": "steps to the target accuracy"}
# The page's first study: one architecture, five normalizers from LayerNorm-like to InstanceNorm-like,
# two seeds; about ten short runs, so the page answers within seconds on a CPU. The CLI's default
# study (normlab study) is the full one.
QUICK = StudyConfig(archs=("cnn",), norms=("none", "batchnorm", "layernorm", "groupnorm", "instancenorm"),
                    groups=(4,), seeds=2, train=TrainConfig(steps=150, image_size=12), k_steps=100)
STATE_CONFIG = "training_study"  # the StudyConfig the page runs
STATE_DONE = "training_done"  # (ModelConfig, TrainConfig) -> TrainResult, finished runs of this session
STATE_STOPPED = "training_stopped"


# --- Pure figure builders ------------------------------------------------------------------------------


def similarity_speed_figure(runs: pd.DataFrame, correlations: pd.DataFrame, speed: str, steps: int,
                            uirevision: str = "training") -> go.Figure:
    """cos_sim at init (x) against training speed (y), one point per run, coloured by normalizer.

    Diverged runs (acc_at_k) sit at 0 and runs that never reach the target (steps_to_target) on a line
    above the last step, both drawn as open markers; the correlations are written on the figure.
    """
    fig = go.Figure()
    level = steps * 1.08  # a row above the last step for runs that never reach the target
    for (arch, norm, label), part in runs.groupby(["arch", "norm", "label"], sort=False):
        y = part[speed].to_numpy(dtype=float)
        missing = np.isnan(y)
        shown = np.where(missing, 0.0 if speed == "acc_at_k" else level, y)
        fig.add_trace(go.Scatter(
            x=part["cos_sim_init"], y=shown, mode="markers", name=f"{label} · {ARCH_LABELS[arch]}",
            legendgroup=label,
            marker={"color": norm_color(norm), "size": 11,
                    "symbol": [ARCH_SYMBOLS.get(arch, "circle") + ("-open" if m else "") for m in missing],
                    "line": {"width": 1, "color": "white"}},
            customdata=np.stack([part["seed"], part["final_test_acc"], part["diverged"]], axis=1),
            hovertemplate=(f"<b>{label}</b> ({ARCH_LABELS[arch]}), seed %{{customdata[0]}}<br>"
                           "cos_sim at init %{x:.3f}<br>" + SPEEDS[speed] + " %{y:.3g}<br>"
                           "final accuracy %{customdata[1]:.3f}<br>diverged %{customdata[2]}<extra></extra>"),
        ))
    text = []
    for row in correlations[correlations["speed"] == speed].itertuples():
        name = ARCH_LABELS.get(row.arch, row.arch)
        if not math.isnan(row.rho):
            text.append(f"{name}: Spearman ρ = {row.rho:+.2f} [{row.lo:+.2f}, {row.hi:+.2f}], n = {row.n}")
        else:  # fewer than two runs, or one side constant (e.g. no run reached the target)
            text.append(f"{name}: no rank correlation (n = {row.n}; one side does not vary)")
    fig.add_annotation(text="<br>".join(text) or "no finished run", showarrow=False,
                       xref="paper", yref="paper", x=0.01, y=0.99, xanchor="left", yanchor="top",
                       align="left", bgcolor="rgba(255,255,255,0.85)", bordercolor="#999", borderwidth=1)
    if speed == "steps_to_target" and runs[speed].isna().any():
        fig.add_hline(y=level, line_dash="dot", line_color="#999",
                      annotation_text="never reached (open markers)", annotation_position="bottom right")
    if speed == "acc_at_k" and runs[speed].isna().any():
        fig.add_annotation(text="open markers at 0: diverged", showarrow=False, xref="paper", yref="paper",
                           x=0.99, y=0.01, xanchor="right", yanchor="bottom")
    fig.update_layout(
        xaxis_title="final-layer cosine similarity at init (cos_sim)",
        yaxis_title=SPEEDS[speed], height=520, uirevision=uirevision, legend_title_text="normalizer · net",
        margin={"t": 30},
    )
    return fig


def curves_figure(curves: pd.DataFrame, y: str, uirevision: str = "training-curves") -> go.Figure:
    """Held-out accuracy or training loss against step, one line per run, one panel per architecture."""
    archs = list(dict.fromkeys(curves["arch"]))
    fig = make_subplots(rows=1, cols=len(archs), shared_yaxes=True,
                        subplot_titles=[ARCH_LABELS.get(a, a) for a in archs])
    legend_seen = set()
    for col, arch in enumerate(archs, start=1):
        for (label, norm, seed), run in curves[curves["arch"] == arch].groupby(["label", "norm", "seed"],
                                                                              sort=False):
            run = run.dropna(subset=[y])
            fig.add_trace(go.Scatter(
                x=run["step"], y=run[y], mode="lines", name=label, legendgroup=label,
                showlegend=label not in legend_seen, line={"color": norm_color(norm), "width": 1.5},
                hovertemplate=f"{label}, seed {seed}<br>step %{{x}}<br>{y} %{{y:.3g}}<extra></extra>",
            ), row=1, col=col)
            legend_seen.add(label)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text={"test_acc": "held-out accuracy", "loss": "training loss (batch)"}[y],
                     type="log" if y == "loss" else "linear", row=1, col=1)
    fig.update_layout(height=420, uirevision=uirevision, margin={"t": 40})
    return fig


# --- Engine calls, cached ------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=1024)
def train(model_config, train_config, _progress=None) -> TrainResult:
    """One run, remembered across sessions; it waits its turn in the server's queue like a probe."""
    return compute(("train", model_config, train_config),
                   lambda: run_training(model_config, train_config, progress=_progress))


@st.cache_data(show_spinner=False, max_entries=64)
def correlations(runs: pd.DataFrame, n_boot: int, confidence: float, seed: int) -> pd.DataFrame:
    return correlate(runs, n_boot=n_boot, confidence=confidence, seed=seed)


def with_value(options: tuple, value) -> list:
    """A slider's options with the current value among them (a study set elsewhere may use another)."""
    return sorted({*options, value})


# --- The page ------------------------------------------------------------------------------------------

selection = views.header(
    "Training speed: does what we see at init predict training?",
    "**Look for:** the paper's picture (Lubana et al. 2021, rank-collapse section): the more similar the "
    "final-layer representations of different inputs are at initialization, the slower the network "
    "trains. Each point is one short SGD run on scikit-learn's digits (one normalizer, one seed); a "
    "negative ρ for accuracy after k steps, or a positive one for steps to the target, agrees with it.",
    "x: cos_sim at the final features at init (mean off-diagonal Gram entry of L2-normalized samples, on a "
    "training batch with its true labels) · y: held-out accuracy (360 digits, fixed split) after k steps, or "
    "the first evaluated step reaching the target accuracy. ρ: Spearman rank correlation with a percentile "
    "bootstrap interval over runs; diverged runs and unreached targets rank as the slowest.",
)
state = st.session_state
config: StudyConfig = state.get(STATE_CONFIG, QUICK)

with st.expander("Study settings", expanded=False), st.form("training_settings"):
    cols = st.columns(3)
    archs = cols[0].multiselect("Architectures", ("cnn", "resnet"), default=list(config.archs),
                                format_func=ARCH_LABELS.get)
    norms = cols[1].multiselect("Normalizers", tuple(NORMALIZERS), default=list(config.norms),
                                format_func=lambda n: NORMALIZERS[n].label)
    groups = cols[2].multiselect("Group counts (GroupNorm, EvoNorm-S0)", divisors(config.width),
                                 default=list(config.groups),
                                 help="G = 1 is LayerNorm, G = width is InstanceNorm.")
    cols = st.columns(4)
    seeds = cols[0].slider("Seeds", 1, max(5, config.seeds), config.seeds)
    steps = cols[1].select_slider("Steps", with_value((50, 100, 150, 200, 300, 400), config.train.steps),
                                  value=config.train.steps)
    k_steps = cols[2].select_slider("k (accuracy after k steps)",
                                    with_value((25, 50, 75, 100, 150, 200, 300), config.k_steps),
                                    value=config.k_steps)
    lr = cols[3].select_slider("Learning rate",
                               with_value((0.005, 0.01, 0.02, 0.05, 0.1, 0.2), config.train.lr),
                               value=config.train.lr)
    cols = st.columns(4)
    cnn_depth = cols[0].slider("CNN depth (conv layers)", 1, max(20, config.cnn_depth), config.cnn_depth)
    resnet_depth = cols[1].slider("ResNet blocks", 1, max(8, config.resnet_depth), config.resnet_depth)
    target = cols[2].select_slider("Target accuracy",
                                   with_value((0.5, 0.6, 0.7, 0.8, 0.9, 0.95), config.train.target_accuracy),
                                   value=config.train.target_accuracy)
    first_seed = cols[3].number_input("First seed", 0, 10_000, config.seed)
    submitted = st.form_submit_button("Run", type="primary", icon=":material/play_arrow:")
    st.caption("The command line runs the same study: `normlab study --help`.")

if submitted:
    try:
        config = StudyConfig(
            archs=tuple(archs), norms=tuple(norms), seeds=seeds,
            # group counts matter only to grouped normalizers; without one, keep the old ones
            groups=tuple(groups) if groups or any(NORMALIZERS[n].grouped for n in norms) else config.groups,
            seed=int(first_seed), width=config.width, cnn_depth=cnn_depth, resnet_depth=resnet_depth,
            k_steps=k_steps,
            train=dataclasses.replace(config.train, steps=steps, lr=lr, target_accuracy=target,
                                      probe_after=min(config.train.probe_after, steps)),
        )
    except ValueError as err:
        st.error(f"Cannot run this study: {err}", icon=":material/error:")
    else:
        state[STATE_CONFIG] = config
        state[STATE_STOPPED] = False

plan = config.runs()
done: dict = state.setdefault(STATE_DONE, {})
for key in [k for k in done if k not in set(plan)]:  # keep the session's memory to the current study
    del done[key]
missing = [run for run in plan if run not in done]

if missing and not state.get(STATE_STOPPED, False):
    cols = st.columns([5, 1], vertical_alignment="center")
    bar = cols[0].progress(0.0, text=f"Training {len(plan)} networks…")
    # Clicking Stop reruns the page, which interrupts the run in flight; this rerun sees the click.
    if cols[1].button("Stop", icon=":material/stop:", key="training_stop"):
        state[STATE_STOPPED] = True
        st.rerun()
    total = len(plan) * config.train.steps
    for i, run in enumerate(plan):
        if run in done:
            continue
        base = i * config.train.steps

        def show(step, steps, label, base=base, i=i):
            bar.progress((base + step) / total,
                         text=f"run {i + 1} of {len(plan)}: {label}, step {step}/{steps}")


        done[run] = train(*run, _progress=show)
    bar.empty()
    cols[1].empty()
elif missing:
    cols = st.columns([5, 1], vertical_alignment="center")
    finished = len(plan) - len(missing)
    cols[0].info(f"Stopped: {finished} of {len(plan)} runs finished"
                 + ("; the figure shows those." if finished else "."), icon=":material/pause:")
    if cols[1].button("Resume", icon=":material/play_arrow:", key="training_resume"):
        state[STATE_STOPPED] = False
        st.rerun()

results = [done[run] for run in plan if run in done]
if not results:
    st.info("No run has finished yet: press Resume.", icon=":material/hourglass_empty:")
    st.stop()
runs = pd.DataFrame([study_row(r, config.k_steps) for r in results])
table = correlations(runs, config.n_boot, config.confidence, config.seed)

speed = st.segmented_control("Training speed", tuple(SPEEDS), key="training_speed", required=True,
                             default="acc_at_k", persist_state="session",
                             format_func=lambda s: {"acc_at_k": f"accuracy after {config.k_steps} steps",
                                                    "steps_to_target": "steps to "
                                                    f"{config.train.target_accuracy:.0%}"}[s])
fig = similarity_speed_figure(runs, table, speed, config.train.steps, uirevision=f"training-{speed}")
views.chart(fig, "training_scatter", selection)
pooled = "all" if runs["arch"].nunique() > 1 else runs["arch"].iloc[0]
agree = table[(table["speed"] == speed) & (table["arch"] == pooled)]
if len(agree) and not math.isnan(agree["rho"].item()):
    rho, lo, hi = agree[["rho", "lo", "hi"]].iloc[0]
    sign = -1 if speed == "acc_at_k" else 1
    verdict = ("agrees with the paper (the interval excludes 0)" if sign * lo > 0 and sign * hi > 0 else
               "goes against the paper (the interval excludes 0)" if sign * lo < 0 and sign * hi < 0 else
               "is not decisive (the interval contains 0)")
    st.caption(f"{ARCH_LABELS[pooled]}: Spearman ρ = {rho:+.2f}, {config.confidence:.0%} interval "
               f"[{lo:+.2f}, {hi:+.2f}] over {len(runs)} runs: this {verdict}.")

with st.expander("Training curves", expanded=False):
    y = st.segmented_control("Curve", ("test_acc", "loss"), key="training_curve", required=True,
                             default="test_acc", persist_state="session",
                             format_func={"test_acc": "held-out accuracy", "loss": "training loss"}.get)
    curves = pd.concat([r.curve.assign(label=variant_label(r.model_config)) for r in results],
                       ignore_index=True)
    views.chart(curves_figure(curves, y, uirevision=f"training-curves-{y}"), "training_curves", selection)

with st.expander("Runs and correlations", expanded=False):
    st.dataframe(table, hide_index=True)
    st.caption("Gradient explosion is an init effect: grad_range is max/min of grad_norm over the conv "
               f"layers, at init and after {config.train.probe_after} steps.")
    st.dataframe(runs[["arch", "label", "seed", "cos_sim_init", "acc_at_k", "steps_to_target",
                       "final_test_acc", "diverged", "grad_range_init", "grad_range_after", "seconds"]],
                 hide_index=True)
    st.download_button("Download runs (CSV)", runs.to_csv(index=False), file_name="normlab-training-runs.csv",
                       mime="text/csv", icon=":material/download:")
