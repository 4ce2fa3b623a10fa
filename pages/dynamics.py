"""Training dynamics: the three properties per layer at each probed step of short runs, side by side."""

import pandas as pd
import streamlit as st

from normlab.core import catalog
from normlab.core.train_config import LM_TRAIN, TEST_DIGITS
from ui.compute import cache, views
from ui.content.defaults import (
    DYNAMICS_NORMS,
    DYNAMICS_PROBE_STEPS,
    DYNAMICS_SEEDS,
    DYNAMICS_STEPS,
    LM_DYNAMICS_STEPS,
    dynamics_runs,
    lm_dynamics_runs,
)
from ui.figures.dynamics import (
    DYNAMICS_MIDDLE,
    dynamics_curves_figure,
    dynamics_figure,
    gradient_growth_by_step,
)
from ui.figures.style import METRIC_TITLES
from ui.state import controls
from ui.state.i18n import N_, _
from ui.state.selection import current_selection

CHOICES = ("batchnorm", "layernorm", "groupnorm", "instancenorm", "none")  # activation-based, and none
MAX_SEEDS = 3

transformer = catalog.family(current_selection().base.arch).tokens  # the sidebar's network


def transformer_header():
    """The page's title and texts for a transformer: a byte-level language model's training."""
    return views.header(
        _("Training dynamics: do the properties at init last?"),
        _("**Look for:** the sidebar's transformer trained as a byte-level language model on English text "
          "(the standard library's pydoc topics) for {steps} AdamW steps at rate {lr:g}, {seeds} seeds; the "
          "probes rerun on the same batch at steps {probe_steps}. Move the step slider or press ▶ Play. "
          "Watch the residual stream's variance per block, whether its tokens stay apart, and each block's "
          "‖∂L/∂W₂‖: Xiong et al. (2020) find Post-LN's largest near the output at init, which is why it "
          "needs a learning-rate warm-up and Pre-LN does not.").format(
            steps=LM_DYNAMICS_STEPS, lr=LM_TRAIN.lr, seeds=DYNAMICS_SEEDS,
            probe_steps=", ".join(str(s) for s in DYNAMICS_PROBE_STEPS)),
        _("act_var: per-feature variance over (N,T) of each block's output, averaged over features · "
          "token_cos_sim: mean off-diagonal cosine between the tokens of a sequence · weight_grad_norm: "
          "‖∂L/∂W₂‖_F of each block's FFN. Lines: seed mean; bands: min–max over seeds. Loss: next-byte "
          "cross-entropy; held-out: windows of the text's last tenth, never trained on; bits per byte = "
          "loss / ln 2."),
    )


selection = transformer_header() if transformer else views.header(
    _("Training dynamics: do the properties at init last?"),
    _("**Look for:** the paper's Figure 1 at this machine's scale. Each normalizer trains a plain CNN "
      "(depth 6, width 16) on scikit-learn's digits for {steps} SGD steps, {seeds} seeds; the probes rerun "
      "on the same batch at steps {probe_steps}. Move the step slider or press ▶ Play. Yang et al. (2019) "
      "say BatchNorm's gradient explosion (gradient norms growing towards the input) is an init effect "
      "that fades within the first steps. Compare the slope of BatchNorm's gradient panel at steps 0, 10 "
      "and 50 (the table under the charts gives its first-to-last ratio): here BatchNorm's first-to-last "
      "ratio eases over the first 20 steps and is larger again by step 50, so at this scale the explosion "
      "does not fade. Compare also how the similarity and rank of each normalizer's representations move "
      "during training.").format(
        steps=DYNAMICS_STEPS, seeds=DYNAMICS_SEEDS,
        probe_steps=", ".join(str(s) for s in DYNAMICS_PROBE_STEPS)),
    _("act_var: per-channel variance over (N,H,W), averaged over channels · cos_sim: mean off-diagonal "
      "cosine similarity of the samples' representations · stable/effective rank of their Gram matrix · "
      "grad_norm: L2 norm of the loss's gradient w.r.t. each conv layer's output. Lines: seed mean; bands: "
      "min–max over seeds. Loss: the training batch's cross-entropy; accuracy: {digits} held-out digits."
      ).format(digits=TEST_DIGITS),
)
state = st.session_state
state.setdefault("dynamics_norms", list(DYNAMICS_NORMS))  # the defaults are what `python -m ui.warm` stores
state.setdefault("dynamics_seeds", DYNAMICS_SEEDS)
cols = st.columns([3, 1])
if transformer:  # the sidebar's networks (one per compared normalizer), with or without warm-up
    warmup = cols[0].segmented_control(
        _("Learning-rate warm-up"), (0, 10, 25), key="dynamics_warmup", required=True, default=0,
        persist_state="session", format_func=lambda k: _("none") if k == 0 else _("{k} steps").format(k=k))
else:
    norms = cols[0].multiselect(_("Normalizers"), CHOICES, key="dynamics_norms", persist_state="session",
                                format_func=controls.normalizer_labels())
seeds = cols[1].slider(_("Seeds"), 1, MAX_SEEDS, key="dynamics_seeds", persist_state="session")
if transformer:
    runs = lm_dynamics_runs(selection.models, int(seeds), int(warmup))
elif not norms:
    st.info(_("Choose at least one normalizer."), icon=":material/tune:")
    st.stop()
else:
    runs = dynamics_runs(tuple(norms), int(seeds))
slot, bar = st.empty(), st.empty()


def train_all() -> list:
    """Every run, admitted together first; stored runs come back at once, the others train in the queue."""
    cache.admit_training(runs)
    on_wait = views.queue_status(slot)
    results = []
    for done, (model, train) in enumerate(runs):
        bar.progress(done / len(runs), text=_("Training {norm}, seed {seed} ({run} of {total})…").format(
            norm=model.norm, seed=train.seed, run=done + 1, total=len(runs)))
        results.append(cache.train(model, train, on_wait))
    return results


results = views.attempt(N_("train these networks"), train_all, "dynamics")
slot.empty()
bar.empty()
if results is None:
    st.stop()
probes = pd.concat([r.probes for r in results], ignore_index=True)
curves = pd.concat([r.curve for r in results], ignore_index=True)

middle = "cos_sim"
if not transformer:  # a transformer's middle panel is its token cosine
    middle = st.segmented_control(_("Middle panel"), tuple(DYNAMICS_MIDDLE), key="dynamics_middle",
                                  required=True, default="cos_sim", persist_state="session",
                                  format_func=controls.labelled(METRIC_TITLES))
left, right = st.columns([3, 1])
with left:
    views.chart(dynamics_figure(probes, middle, uirevision=f"dynamics-{middle}-{transformer}",
                                transformer=transformer), "dynamics", selection)
with right:
    curves_shown = {"loss": _("training loss"), "test_acc": _("held-out accuracy")}
    if transformer:
        curves_shown = {"test_bpb": _("held-out bits per byte"), "test_loss": _("held-out loss"),
                        "loss": _("training loss")}
    y = st.segmented_control(_("Curve"), tuple(curves_shown), key=f"dynamics_curve_{transformer}",
                             required=True, default=next(iter(curves_shown)), persist_state="session",
                             format_func=curves_shown.get)
    views.chart(dynamics_curves_figure(curves, y, uirevision=f"dynamics-curves-{y}"),
                "dynamics_curves", selection)
diverged = [_("{norm} seed {seed}").format(norm=r.model_config.norm, seed=r.train_config.seed)
            for r in results if r.diverged]
if diverged:
    st.caption(_("Diverged (stopped at the step its loss blew up): {runs}.").format(runs=", ".join(diverged)))
if transformer:
    final = [r.summary() for r in results if not r.diverged]
    if final:
        st.caption(_("Held-out after {steps} steps: {loss:.3f} nats per byte = {bpb:.3f} bits per byte "
                     "(mean over the runs that did not diverge).").format(
            steps=LM_DYNAMICS_STEPS, loss=sum(s["final_test_loss"] for s in final) / len(final),
            bpb=sum(s["final_test_bpb"] for s in final) / len(final)))
    st.stop()
with st.expander(_("Gradient growth per step"), expanded=False):
    st.caption(_("grad_growth: grad_norm at the first conv layer over grad_norm at the last hidden one, on "
                 "the seed means per layer, at each probed step (above 1: the gradient grows toward the "
                 "input)."))
    st.dataframe(gradient_growth_by_step(probes))
