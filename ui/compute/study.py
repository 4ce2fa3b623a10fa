"""The training page's study: its settings form, and the runner that trains its runs across reruns.

``Study`` keeps its state in a mapping (the session's state on the page, a dict in tests): the study
config, the finished runs of this session and whether the viewer stopped it. Each run is trained on
its own (and stored by ``ui.compute.cache``), so a stopped study resumes where it stopped and a plot option
never retrains. Reads finished runs (their frames), never trains or builds a network itself; draws
widgets only in ``settings_form``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, MutableMapping

import pandas as pd
import streamlit as st

from normlab.core import catalog
from normlab.core.config import divisors
from normlab.core.train_config import StudyConfig, TrainConfig
from normlab.science.study import study_row
from normlab.science.training import TrainResult
from ui.content.defaults import quick_study
from ui.figures.training import arch_label
from ui.state import controls
from ui.state.i18n import N_, _

QUICK = quick_study()  # the page's first study (also warmed into the store by `python -m ui.warm`)
FULL = StudyConfig()  # the CLI's default study, the README's table: a one-click preset on the page
STATE_CONFIG = "training_study"  # the StudyConfig the page runs
STATE_DONE = "training_done"  # (ModelConfig, TrainConfig) -> TrainResult, finished runs of this session
STATE_STOPPED = "training_stopped"
# The study tables' column headers where a column's name is not a term (the frames and their CSV keep
# the engine's names).
COLUMN_LABELS = {"arch": N_("net"), "label": N_("normalizer"), "seed": N_("seed"),
                 "speed": N_("speed measure"), "lo": N_("interval low"), "hi": N_("interval high"),
                 "confidence": N_("confidence"), "diverged": N_("diverged"), "seconds": N_("seconds")}

Run = tuple  # (ModelConfig, TrainConfig)
Trainer = Callable[[object, TrainConfig, Callable[[int, int, str], None]], TrainResult]


class Study:
    """The study shown on the page and where its training stands.

    Args:
        state: where the study lives between reruns (``st.session_state``).
        default: the study before the viewer submits one.
    """

    def __init__(self, state: MutableMapping, default: StudyConfig = QUICK) -> None:
        self.state = state
        self.default = default

    @property
    def config(self) -> StudyConfig:
        return self.state.get(STATE_CONFIG, self.default)

    def submit(self, config: StudyConfig) -> None:
        """Show ``config`` from now on, and train what it lacks."""
        self.state[STATE_CONFIG] = config
        self.state[STATE_STOPPED] = False

    @property
    def plan(self) -> list[Run]:
        return self.config.runs()

    @property
    def done(self) -> dict:
        """Finished runs of this session, kept to the current study's."""
        done = self.state.setdefault(STATE_DONE, {})
        plan = set(self.plan)
        for key in [k for k in done if k not in plan]:
            del done[key]
        return done

    @property
    def missing(self) -> list[Run]:
        done = self.done
        return [run for run in self.plan if run not in done]

    @property
    def stopped(self) -> bool:
        return bool(self.state.get(STATE_STOPPED, False))

    def stop(self) -> None:
        self.state[STATE_STOPPED] = True

    def resume(self) -> None:
        self.state[STATE_STOPPED] = False

    def take_stored(self, stored: Callable[[object, TrainConfig], TrainResult | None]) -> None:
        """Keep every missing run that ``stored`` already holds (``ui.compute.cache.stored_training``),
        so what is left missing is what must train."""
        done = self.done
        for run in self.missing:
            result = stored(*run)
            if result is not None:
                done[run] = result

    def run(self, train: Trainer, progress: Callable[[float, str], None] | None = None,
            finished: Callable[[], None] | None = None) -> None:
        """Train every missing run in plan order, keeping each as it finishes.

        Args:
            train: ``train(model, train_config, step_progress)`` -> TrainResult (``ui.compute.cache.train``).
            progress: called as ``progress(fraction, text)`` for the whole study after each step.
            finished: called after each run is kept (the page redraws the runs so far).
        """
        plan, steps = self.plan, self.config.train.steps
        done = self.done
        total = len(plan) * steps
        for i, run in enumerate(plan):
            if run in done:
                continue

            def show(step, _steps, label, base=i * steps, i=i):
                if progress is not None:
                    progress((base + step) / total,
                             _("run {run} of {runs}: {label}, step {step}/{steps}").format(
                                 run=i + 1, runs=len(plan), label=label, step=step, steps=_steps))

            done[run] = train(*run, show)
            if finished is not None:
                finished()

    def results(self) -> list[TrainResult]:
        done = self.done
        return [done[run] for run in self.plan if run in done]

    def runs_frame(self) -> pd.DataFrame:
        """One row per finished run (``study_row``), in plan order."""
        return pd.DataFrame([study_row(r, self.config.k_steps) for r in self.results()])


def verdict(runs: pd.DataFrame, table: pd.DataFrame, speed: str, config: StudyConfig) -> str | None:
    """One sentence on whether the pooled correlation agrees with the paper; None without a correlation."""
    pooled = "all" if runs["arch"].nunique() > 1 else runs["arch"].iloc[0]
    agree = table[(table["speed"] == speed) & (table["arch"] == pooled)]
    if not len(agree) or math.isnan(agree["rho"].item()):
        return None
    rho, lo, hi = agree[["rho", "lo", "hi"]].iloc[0]
    sign = -1 if speed == "acc_at_k" else 1  # the paper: more similar -> fewer correct after k, more steps
    if sign * lo > 0 and sign * hi > 0:
        said = _("{net}: Spearman ρ = {rho}, {confidence} interval [{lo}, {hi}] over {n} runs: this agrees "
                 "with the paper (the interval excludes 0).")
    elif sign * lo < 0 and sign * hi < 0:
        said = _("{net}: Spearman ρ = {rho}, {confidence} interval [{lo}, {hi}] over {n} runs: this goes "
                 "against the paper (the interval excludes 0).")
    else:
        said = _("{net}: Spearman ρ = {rho}, {confidence} interval [{lo}, {hi}] over {n} runs: this is not "
                 "decisive (the interval contains 0).")
    return said.format(net=arch_label(pooled), rho=f"{rho:+.2f}", confidence=f"{config.confidence:.0%}",
                       lo=f"{lo:+.2f}", hi=f"{hi:+.2f}", n=len(runs))


def speed_label(speed: str, config: StudyConfig) -> str:
    """How the page names a speed measure, with the study's k or target."""
    if speed == "acc_at_k":
        return _("accuracy after {k} steps").format(k=config.k_steps)
    return _("steps to {target}").format(target=f"{config.train.target_accuracy:.0%}")


def column_labels(columns) -> dict[str, str]:
    """``st.dataframe``'s column_config for a study table: translated headers, by column name."""
    return {c: _(COLUMN_LABELS[c]) for c in columns if c in COLUMN_LABELS}


def with_value(options: tuple, value) -> list:
    """A slider's options with the current value among them (a study set elsewhere may use another)."""
    return sorted({*options, value})


def settings_form(config: StudyConfig) -> StudyConfig | None:
    """The study's settings in a form; the submitted study, or None while nothing was submitted.

    Raises:
        ValueError: the submitted combination is not a valid study; the message names the field.
    """
    with st.expander(_("Study settings"), expanded=False), st.form("training_settings"):
        cols = st.columns(3)
        archs = cols[0].multiselect(_("Architectures"), ("cnn", "resnet"), default=list(config.archs),
                                    format_func=controls.labelled({a: catalog.family(a).label
                                                                   for a in ("cnn", "resnet")}))
        norms = cols[1].multiselect(_("Normalizers"), controls.DASHBOARD_NORMS, default=list(config.norms),
                                    format_func=controls.normalizer_labels())
        groups = cols[2].multiselect(_("Group counts (GroupNorm, EvoNorm-S0)"), divisors(config.width),
                                     default=list(config.groups),
                                     help=_("G = 1 is LayerNorm, G = width is InstanceNorm."))
        cols = st.columns(4)
        seeds = cols[0].slider(_("Seeds"), 1, max(5, config.seeds), config.seeds)
        steps = cols[1].select_slider(_("Steps"),
                                      with_value((50, 100, 150, 200, 300, 400), config.train.steps),
                                      value=config.train.steps)
        k_steps = cols[2].select_slider(_("k (accuracy after k steps)"),
                                        with_value((25, 50, 75, 100, 150, 200, 300), config.k_steps),
                                        value=config.k_steps)
        lr = cols[3].select_slider(_("Learning rate"),
                                   with_value((0.005, 0.01, 0.02, 0.05, 0.1, 0.2), config.train.lr),
                                   value=config.train.lr)
        cols = st.columns(4)
        cnn_depth = cols[0].slider(_("CNN depth (conv layers)"), 1, max(20, config.cnn_depth),
                                   config.cnn_depth)
        resnet_depth = cols[1].slider(_("ResNet blocks"), 1, max(8, config.resnet_depth),
                                      config.resnet_depth)
        target = cols[2].select_slider(_("Target accuracy"),
                                       with_value((0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
                                                  config.train.target_accuracy),
                                       value=config.train.target_accuracy)
        first_seed = cols[3].number_input(_("First seed"), 0, 10_000, config.seed)
        submitted = st.form_submit_button(_("Run"), type="primary", icon=":material/play_arrow:")
        st.caption(_("The command line runs the same study: `normlab study --help`."))
    if not submitted:
        return None
    return StudyConfig(
        archs=tuple(archs), norms=tuple(norms), seeds=seeds,
        # group counts matter only to grouped normalizers; without one, keep the old ones
        groups=tuple(groups) if groups or any(catalog.NORM_INFO[n].grouped for n in norms) else config.groups,
        seed=int(first_seed), width=config.width, cnn_depth=cnn_depth, resnet_depth=resnet_depth,
        k_steps=k_steps,
        train=dataclasses.replace(config.train, steps=steps, lr=lr, target_accuracy=target,
                                  probe_after=min(config.train.probe_after, steps)),
    )
