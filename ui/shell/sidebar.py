"""The shared sidebar: widgets in, a ``Selection`` of frozen configs out.

``sidebar()`` draws the controls (their values live in session state under the keys of
``ui.state.controls``, which are also the link's parameters), shows what the choice costs and returns the
configs built by ``ui.state.selection.build_selection``.
"""

from __future__ import annotations

import streamlit as st

from normlab import PRESETS, available_devices
from normlab.core import catalog
from normlab.core.config import WN_ACT_PLACEMENTS
from normlab.science.data import MAX_UPLOAD_BYTES, MAX_UPLOADS, register_upload
from ui.compute.cost import cost_summary
from ui.shell.lecture import entered
from ui.state import controls as C
from ui.state import i18n, links
from ui.state.i18n import LANGUAGE_NAMES, LANGUAGES, N_, _
from ui.state.selection import MIN_UPLOAD_IMAGES, SELECTION_KEY, Selection, build_selection, with_upload

# Controls a page does not read, hidden there (their values are kept): the group-size page sweeps every
# group count of one GroupNorm net, the training pages run their own networks.
IGNORED = {"groups": {"norms", "groups"}, "training": {"network"}, "dynamics": {"network"},
           "placement": {"network"}}
# The pages that probe the sidebar's networks as chosen: the cost line prices what they compute. The others
# sweep group counts, train their own networks, measure each claim's setup or read stored results.
PRICED = {"overview", "variance", "rank", "gradients"}
# Why a page without the network controls has none (default: it trains its own networks).
OWN_NETWORKS = {"placement": N_("This page probes its own transformers (its controls are above the charts): "
                                "the network controls apply to the other pages."),
                "dynamics": N_("This page trains its own plain CNNs on the digits; with Transformer chosen "
                               "as the network on another page, it trains that transformer as a byte-level "
                               "language model instead.")}
KEEP = "session"  # widget values survive being hidden and page switches
# Uploaded images: the uploader's files are decoded once, when they change, into an in-memory batch
# (normlab.science.data.register_upload); the session keeps its handle here, or the words of why it
# was refused.
UPLOAD_KEY = "_upload"
UPLOAD_ERROR_KEY = "_upload_error"
UPLOAD_SIZE = max(C.IMAGE_SIZES)  # decoded once at the largest image size; each probe resizes from it

# Long words wrap rather than being cut: a button's, toggle's or pill's label and a normalizer's tag
# ("Filter Response Norm + TLU") take a second line, and a row of pills wider than its column wraps.
WRAP_CSS = """
<style>
  .stMarkdownEllipsis, .stMarkdownEllipsis *, [data-testid="stMultiSelectTagsContainer"] span {
    white-space: normal !important; overflow: visible !important; text-overflow: clip !important; }
  [data-testid="stMultiSelectTagsContainer"] span { max-width: none !important; }
  [data-testid="stMultiSelectTagsContainer"] [data-tag] { height: auto !important; padding-block: 2px; }
  [data-testid="stMultiSelectTagsContainer"] { max-height: none !important; flex-wrap: wrap !important;
                                               overflow: visible !important; }
  [data-testid="stButtonGroup"] > div { flex-wrap: wrap; overflow: visible; }
</style>
"""


def _on_net_change() -> None:
    """A new family starts from its own default sizes (an MLP is deep and wide, a ResNet narrow) and
    keeps the chosen normalizers it takes (none left: its own opening choice)."""
    state = st.session_state
    net = state.get("net")
    if net in catalog.ARCHITECTURES:
        state["depth"] = catalog.family(net).default_depth
        state["width"] = catalog.family(net).default_width
    if net in C.NETS:
        state["norms"] = list(C.norms_for(net, state.get("norms") or ()))


def _head_controls(width: int) -> None:
    """Heads: only divisors of the width (a kept count that no longer divides moves to one that does)."""
    options = C.head_choices(width)
    state = st.session_state
    if state.get("heads") not in options:
        below = [o for o in options if o <= (state.get("heads") or 0)]
        state["heads"] = below[-1] if below else options[0]
    st.select_slider(_("Attention heads H (divisors of the width)"), options, key="heads", persist_state=KEEP)


def _transformer_controls(lecture: bool) -> None:
    """Placement, heads, tokens per sequence and the options of spec section 5 (transformer only)."""
    st.selectbox(_("Norm placement"), C.BY_KEY["placement"].choices, key="placement", persist_state=KEEP,
                 format_func=C.labelled(C.PLACEMENT_LABELS),
                 help=_("Where each block's normalizer sits around its two sub-layers F (attention, FFN)."))
    _head_controls(int(st.session_state["width"]))
    st.select_slider(_("Tokens per sequence T"), C.SEQ_LENS, key="seq_len", persist_state=KEEP)
    if lecture:
        return
    with st.expander(_("Transformer options"), expanded=False):
        st.checkbox(_("Causal attention (off: bidirectional)"), key="causal", persist_state=KEEP)
        st.segmented_control(_("Residual branch scale"), tuple(C.RESIDUAL_SCALES), key="residual_scale",
                             required=True, persist_state=KEEP, format_func=C.RESIDUAL_SCALE_LABELS.get,
                             help=_("Each branch F is multiplied by it; 1/√L keeps tokens apart at depth "
                                    "(Noci et al. 2022)."))
        st.checkbox(_("QK-norm (the normalizer on queries and keys)"), key="qk_norm", persist_state=KEEP)
        cols = st.columns(2)
        cols[0].checkbox(_("FFN"), key="ffn", persist_state=KEEP,
                         help=_("Off: attention-only blocks (Dong et al. 2021)."))
        cols[1].checkbox(_("Skip connections"), key="skip", persist_state=KEEP,
                         help=_("Off with the FFN off: pure attention, which collapses to rank one."))


def _group_controls(net: str, width: int, stages: int, lecture: bool) -> None:
    options = C.group_choices(net, width, stages)
    state = st.session_state
    for key in C.GROUP_BY:
        # The widths changed under a kept value: move to the nearest valid one rather than refuse.
        if state.get(key) not in options:
            below = [o for o in options if o <= (state.get(key) or 0)]
            state[key] = below[-1] if below else C.middle_choice(options)
    if not lecture:
        st.segmented_control(_("Set GroupNorm by"), C.GROUP_BY, key="group_by", required=True,
                             persist_state=KEEP,
                             format_func={"groups": _("group count G"), "group_size": _("group size")}.get)
    smallest = options[-1]
    if state.get("group_by") == "group_size":
        st.select_slider(_("Group size (channels per group; only divisors of every width)"), options,
                         key="group_size", persist_state=KEEP,
                         format_func=lambda s: f"{s} · InstanceNorm" if s == 1 else str(s))
    else:
        st.select_slider(
            _("Groups G (only divisors of every width)"), options, key="groups", persist_state=KEEP,
            format_func=lambda g: f"{g} · LayerNorm" if g == 1 else (
                f"{g} · InstanceNorm" if g == smallest else str(g)),
            help=_("G = 1 normalizes over all channels (LayerNorm); one channel per group is InstanceNorm."),
        )


def _on_upload() -> None:
    """Decode the uploader's files (session memory only); a file Pillow cannot read is named, as text."""
    state = st.session_state
    files = state.get("upload_files") or []
    state[UPLOAD_KEY], state[UPLOAD_ERROR_KEY] = None, None
    if not files:
        return
    try:
        state[UPLOAD_KEY] = register_upload([(f.name, f.getvalue()) for f in files], UPLOAD_SIZE)
    except ValueError as err:
        state[UPLOAD_ERROR_KEY] = str(err)


def _probe_controls(tokens: bool) -> None:
    with st.expander(_("Inputs, batch and seeds"), expanded=False):
        uploaded = False
        if tokens:
            st.selectbox(_("Tokens"), C.TOKEN_INPUTS, key="tokens", persist_state=KEEP,
                         format_func=C.labelled(C.TOKEN_LABELS),
                         help=_("Byte sequences: uniform random bytes, or windows cut from the English "
                                "text every Python carries (nothing is downloaded)."))
        else:
            uploaded = _image_controls()
        st.select_slider(_("Batch size N"), C.BATCHES, key="batch", persist_state=KEEP, disabled=uploaded,
                         help=_("No rank can exceed min(N, features)."))
        if not tokens:
            st.select_slider(_("Image size"), C.IMAGE_SIZES, key="image", persist_state=KEEP)
        st.slider(_("Seeds (mean line, min–max band)"), 1, C.SLIDER_MAX_SEEDS, key="seeds",
                  persist_state=KEEP)
        st.number_input(_("First seed"), 0, C.SLIDER_MAX_SEED, key="seed", persist_state=KEEP)
        devices = ["auto", *available_devices()]
        if st.session_state.get("device") not in devices:
            st.session_state["device"] = "auto"
        st.selectbox(_("Device"), devices, key="device", persist_state=KEEP,
                     format_func=C.labelled(C.DEVICE_LABELS))
        st.selectbox(_("Numerical-rank tolerance"), C.RANK_TOLS, key="rank_tol", persist_state=KEEP,
                     format_func=lambda t: f"{t:g} · σ_max")


def _image_controls() -> bool:
    """The image families' inputs: uploaded images, else the input menu. Whether an upload stands in for
    the input and the batch size (those controls are then shown disabled)."""
    megabytes = MAX_UPLOAD_BYTES // 2**20
    # The browser refuses a larger file before sending it, and the uploader's own line states the limit.
    st.file_uploader(
        _("Your own images (they become the probe batch)"), type=["png", "jpg", "jpeg"],
        accept_multiple_files=True, key="upload_files", on_change=_on_upload, max_upload_size=megabytes,
        help=_("Two to {count} images, {size} MB each at most; scaled and centre-cropped to the image "
               "size. Kept in this server's memory for your session only, never written to disk. "
               "Remove them to go back to the input below.").format(count=MAX_UPLOADS, size=megabytes),
    )
    # Streamlit writes the uploader's own line in English alone: the limit again, in the session's language.
    st.caption(_("At most {count} images, {size} MB per file.").format(count=MAX_UPLOADS, size=megabytes))
    state = st.session_state
    # Pages without these controls drop the uploader's files, not the decoded batch: offer a way out.
    if state.get(UPLOAD_KEY) is not None and not state.get("upload_files"):
        st.caption(_("Still probing {count} images uploaded earlier.").format(
            count=len(state[UPLOAD_KEY].names)))
        if st.button(_("Forget the uploaded images"), key="upload_forget", icon=":material/close:"):
            state[UPLOAD_KEY] = None
    # The uploaded images are the input and their count the batch: those two controls stand idle.
    uploaded = len(getattr(state.get(UPLOAD_KEY), "names", ())) >= MIN_UPLOAD_IMAGES
    if uploaded:
        st.caption(_("The uploaded images replace the input and the batch size below; remove them to "
                     "use these again."))
    st.selectbox(_("Input"), C.BY_KEY["input"].choices, key="input", persist_state=KEEP,
                 format_func=C.labelled(C.INPUT_LABELS), disabled=uploaded,
                 help=_("Instance and batch statistics only differ on real images."))
    return uploaded


def _network_controls(lecture: bool, ignored: set[str]) -> None:
    """Network, normalizers, sizes and GroupNorm's setting (those in ``ignored`` are not drawn)."""
    state = st.session_state
    net = st.selectbox(_("Network"), tuple(C.NETS), format_func=C.net_labels(), key="net",
                       persist_state=KEEP, on_change=_on_net_change)
    if state.get("norms") and any(n not in C.offered_norms(net) for n in state["norms"]):
        state["norms"] = list(C.norms_for(net, state["norms"]))  # a kept choice the network does not take
    if "norms" in ignored:
        norms = list(state.get("norms", C.DEFAULTS["norms"]))
    else:
        norms = st.multiselect(_("Normalizers to compare"), C.offered_norms(net), key="norms",
                               persist_state=KEEP,
                               format_func=C.normalizer_labels(),
                               help=_("One network per normalizer, same sizes and inputs; one colour each."))
    if net in PRESETS:
        fixed = PRESETS[net]
        sizes = (_("Sizes fixed by the preset: depth {depth}, width {width}, {stages} stages")
                 if "stages" in fixed else _("Sizes fixed by the preset: depth {depth}, width {width}"))
        st.caption(sizes.format(depth=fixed["depth"], width=fixed["width"], stages=fixed.get("stages")))
    else:
        depths = sorted({*C.DEPTHS, int(state.get("depth", C.DEFAULTS["depth"]))})
        info = C.family_of(net)
        depth_label = (_("Depth (blocks per stage)") if info.residual else
                       _("Depth (blocks)") if info.tokens else _("Depth (layers)"))
        width_label = (_("Width (channels)") if info.spatial else
                       _("Width D (features per token)") if info.tokens else _("Width (units)"))
        st.select_slider(depth_label, depths, key="depth", persist_state=KEEP)
        st.select_slider(width_label, C.WIDTHS, key="width", persist_state=KEEP)
    if C.is_transformer(net):
        _transformer_controls(lecture)
    if C.is_residual(net) and net not in PRESETS:
        st.slider(_("Stages (width doubles, stride 2)"), 1, C.SLIDER_MAX_STAGES, key="stages",
                  persist_state=KEEP)
    if C.is_residual(net):
        cols = st.columns(2)
        cols[0].checkbox(_("Pre-activation"), key="preact", persist_state=KEEP)
        cols[1].checkbox("SkipInit (α = 0)", key="skipinit", persist_state=KEEP)
        if "weightnorm" in norms and not lecture:
            st.radio(_("Weight Normalization: corrected ReLU"), WN_ACT_PLACEMENTS, key="wn_act",
                     persist_state=KEEP, horizontal=True,
                     format_func={"after_add": _("after the addition (paper's code)"),
                                  "in_branch": _("inside the branch")}.get)
    if "groups" not in ignored and any(catalog.NORM_INFO[n].grouped for n in norms):
        try:
            _group_controls(net, int(state["width"]), int(state["stages"]), lecture)
        except ValueError as err:
            st.error(_("Groups: {error}").format(error=err))


def _uploaded(selection: Selection) -> Selection:
    """The selection on the session's uploaded images, when there are any (with a caption naming them)."""
    state = st.session_state
    if state.get(UPLOAD_ERROR_KEY):
        st.error(_("Uploaded images: {error}").format(error=links.markdown_text(state[UPLOAD_ERROR_KEY])),
                 icon=":material/error:")
    upload = state.get(UPLOAD_KEY)
    if upload is None:
        return selection
    try:
        selection = with_upload(selection, upload)
    except ValueError as err:
        st.warning(_("{error}. Probing the input chosen below instead.").format(
            error=links.markdown_text(err)), icon=":material/photo_library:")
        return selection
    more = len(upload.names) - 4
    batch = (_("Probe batch: your {count} uploaded images ({names} and {more} more).") if more > 0
             else _("Probe batch: your {count} uploaded images ({names})."))
    st.caption(batch.format(count=len(upload.names), names=links.markdown_text(", ".join(upload.names[:4])),
                            more=more))
    return selection


def _share(page_name: str | None, url_path: str | None) -> None:
    with st.expander(_("Share this view"), icon=":material/link:"):
        st.caption(_("The link holds every control and the page; copy it with the button on the right."))
        links.share_box(page_name, url_path)


def sidebar(page_name: str | None = None, url_path: str | None = None) -> Selection:
    """Draw the shared sidebar and return the selection the pages draw.

    Args:
        page_name: the shown page's file stem (its own plot options join the share link).
        url_path: the shown page's URL path (the share link names it).

    An invalid combination shows an error naming the field and keeps the last valid selection, so
    what was drawn stays on screen.
    """
    state = st.session_state
    links.init_state()
    st.html(WRAP_CSS)
    with st.sidebar:
        links.show_notices()
        st.segmented_control(_("Language"), LANGUAGES, key=i18n.KEY, required=True, persist_state=KEEP,
                             format_func=LANGUAGE_NAMES.get, on_change=i18n.keep_values)
        lecture = st.toggle(_("Lecture mode"), key="lecture", persist_state=KEEP, on_change=entered,
                            help=_("Hides the probe plumbing, enlarges type and plots, steps through the "
                                   "claims."))
        ignored = IGNORED.get(page_name or "", set())
        if "network" in ignored:
            own = OWN_NETWORKS.get(page_name or "")
            st.caption(_(own) if own else _("This page trains its own networks: the network controls apply "
                                            "to the other pages."))
        else:
            _network_controls(lecture, ignored)
            if not lecture:
                _probe_controls(C.is_transformer(state["net"]))
        try:
            selection = build_selection(links.current_values())
        except ValueError as err:
            st.error(_("{error}. Showing the last valid choice.").format(error=err), icon=":material/error:")
            selection = state.get(SELECTION_KEY) or build_selection(C.DEFAULTS)
        else:
            if not C.is_transformer(state["net"]):  # a transformer reads bytes, never the uploaded images
                selection = _uploaded(selection)
            state[SELECTION_KEY] = selection
        if not lecture and page_name in PRICED:
            st.caption(cost_summary(selection.models, selection.probe))
        _share(page_name, url_path)
    return selection
