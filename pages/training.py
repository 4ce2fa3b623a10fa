"""Training speed: does the final-layer similarity at init predict how fast a network trains on the digits?"""

import pandas as pd
import streamlit as st

from normlab.core.train_config import TEST_DIGITS
from normlab.science.study import variant_label
from ui.compute import cache, views
from ui.compute.study import FULL, QUICK, Study, column_labels, settings_form, speed_label, verdict
from ui.figures.training import SPEEDS, curves_figure, similarity_speed_figure
from ui.state.i18n import N_, _

selection = views.header(
    _("Training speed: does what we see at init predict training?"),
    _("**Look for:** the paper's picture (Lubana et al. 2021, rank-collapse section): the more similar the "
      "final-layer representations of different inputs are at initialization, the slower the network "
      "trains. Each point is one short SGD run on scikit-learn's digits (one normalizer, one seed); a "
      "negative ρ for accuracy after k steps, or a positive one for steps to the target, agrees with it."),
    _("x: cos_sim at the final features at init (mean off-diagonal Gram entry of L2-normalized samples, on "
      "a training batch with its true labels) · y: held-out accuracy ({digits} digits, fixed split) after k "
      "steps, or the first evaluated step reaching the target accuracy. ρ: Spearman rank correlation with a "
      "percentile bootstrap interval over runs; diverged runs and unreached targets rank as the slowest."
      ).format(digits=TEST_DIGITS),
)
study = Study(st.session_state)
presets = st.columns(2)
if presets[0].button(_("Quick study ({runs} runs)").format(runs=len(QUICK.runs())), key="training_quick",
                     icon=":material/bolt:", help=_("The page's first study: seconds on a CPU.")):
    study.submit(QUICK)
if presets[1].button(_("The README's full study ({runs} runs)").format(runs=len(FULL.runs())),
                     key="training_full", icon=":material/science:",
                     help=_("The study behind the README's table (`normlab study`): {variants} normalizer "
                            "variants × {nets} nets × {seeds} seeds, {steps} steps each. It trains for "
                            "minutes; runs already in the store come back at once.").format(
                         variants=len(FULL.runs()) // (len(FULL.archs) * FULL.seeds), nets=len(FULL.archs),
                         seeds=FULL.seeds, steps=FULL.train.steps)):
    study.submit(FULL)
submitted = views.attempt(N_("run this study"), lambda: settings_form(study.config), "settings")
if submitted is not None:
    study.submit(submitted)
views.attempt(N_("read the stored runs"), lambda: study.take_stored(cache.stored_training), "stored")
config, missing = study.config, study.missing


def draw_so_far(slot) -> None:
    """The runs finished so far, drawn while the others train (the full view follows when all are done)."""
    runs = study.runs_frame()
    table = cache.correlations(runs, config.n_boot, config.confidence, config.seed)
    speed = st.session_state.get("training_speed", "acc_at_k")
    with slot.container():
        fig = similarity_speed_figure(runs, table, speed, config.train.steps, uirevision="training-live")
        views.chart(fig, f"training_live_{len(runs)}", selection)
        st.caption(_("{finished} of {total} runs finished; the chart fills in as each run finishes.").format(
            finished=len(runs), total=len(study.plan)))


if missing and not study.stopped:  # only runs that must train are missing: Stop shows while they do
    cols = st.columns([5, 1], vertical_alignment="center")
    slot = cols[0].empty()
    bar = cols[0].progress(0.0, text=_("Training {n} networks…").format(n=len(missing)))
    stop = cols[1].empty()
    so_far = st.empty()
    # Clicking Stop reruns the page, which interrupts the run in flight; this rerun sees the click.
    if stop.button(_("Stop"), icon=":material/stop:", key="training_stop"):
        study.stop()
        st.rerun()
    if study.results():
        draw_so_far(so_far)

    def train_all() -> None:
        cache.admit_training(missing)  # every run still to train, before the first one queues
        on_wait = views.queue_status(slot)
        study.run(lambda m, t, show: cache.train(m, t, on_wait, show),
                  lambda fraction, text: bar.progress(fraction, text=text), lambda: draw_so_far(so_far))

    views.attempt(N_("train this study"), train_all, "train")
    slot.empty()
    bar.empty()
    stop.empty()
    so_far.empty()
elif missing:
    cols = st.columns([5, 1], vertical_alignment="center")
    finished = len(study.plan) - len(missing)
    stopped = (_("Stopped: {finished} of {total} runs finished; the figure shows those.") if finished else
               _("Stopped: {finished} of {total} runs finished."))
    cols[0].info(stopped.format(finished=finished, total=len(study.plan)), icon=":material/pause:")
    if cols[1].button(_("Resume"), icon=":material/play_arrow:", key="training_resume"):
        study.resume()
        st.rerun()

results = study.results()
if not results:
    st.info(_("No run has finished yet."), icon=":material/hourglass_empty:")
    st.stop()
runs = study.runs_frame()
table = views.attempt(N_("correlate the runs"),
                      lambda: cache.correlations(runs, config.n_boot, config.confidence, config.seed), "rho")
if table is None:
    st.stop()
speed = st.segmented_control(_("Training speed"), tuple(SPEEDS), key="training_speed", required=True,
                             default="acc_at_k", persist_state="session",
                             format_func=lambda s: speed_label(s, config))
fig = similarity_speed_figure(runs, table, speed, config.train.steps, uirevision=f"training-{speed}")
views.chart(fig, "training_scatter", selection)
if said := verdict(runs, table, speed, config):
    st.caption(said)

with st.expander(_("Training curves"), expanded=False):
    y = st.segmented_control(_("Curve"), ("test_acc", "loss"), key="training_curve", required=True,
                             default="test_acc", persist_state="session",
                             format_func=lambda c: {"test_acc": _("held-out accuracy"),
                                                    "loss": _("training loss")}[c])
    curves = pd.concat([r.curve.assign(label=variant_label(r.model_config)) for r in results],
                       ignore_index=True)
    views.chart(curves_figure(curves, y, uirevision=f"training-curves-{y}"), "training_curves",
                selection)

with st.expander(_("Runs and correlations"), expanded=False):
    st.dataframe(table, hide_index=True, column_config=column_labels(table.columns))
    st.caption(_("Gradient explosion is an init effect: grad_range is max/min of grad_norm over the conv "
                 "layers, at init and after {steps} steps.").format(steps=config.train.probe_after))
    shown = runs[["arch", "label", "seed", "cos_sim_init", "acc_at_k", "steps_to_target", "final_test_acc",
                  "diverged", "grad_range_init", "grad_range_after", "seconds"]]
    st.dataframe(shown, hide_index=True, column_config=column_labels(shown.columns))
    st.download_button(_("Download runs (CSV)"), runs.to_csv(index=False),
                       file_name="normlab-training-runs.csv", mime="text/csv", icon=":material/download:")
