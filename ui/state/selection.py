"""What the pages draw: the compared networks and how they are probed, built from control values.

Pure: no Streamlit, so claims, links and tests build selections exactly as the sidebar does (its
messages speak the current language, ``ui.state.i18n``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import streamlit as st

from normlab import PRESETS, ModelConfig, ProbeConfig
from normlab.core.catalog import NORM_INFO
from ui.state import controls as C
from ui.state.i18n import _


@dataclass(frozen=True)
class Selection:
    """What the pages draw: one network per compared normalizer, probed the same way."""

    models: tuple[ModelConfig, ...]
    probe: ProbeConfig
    lecture: bool = False

    @property
    def base(self) -> ModelConfig:
        """The first network: the one single-network views (spectrum ceiling, theory) speak of."""
        return self.models[0]


def build_selection(values: Mapping[str, object]) -> Selection:
    """Control values (as in ``controls.CONTROLS``) -> configs.

    Raises:
        ValueError: a combination the configs refuse; the message names the field.
    """
    v = {**C.DEFAULTS, **values}
    net, norms = v["net"], tuple(v["norms"])
    if not norms:
        raise ValueError(_("normalizers: choose at least one normalizer to compare"))
    tokens = C.is_transformer(net)
    fields = C.network_fields(net)
    if net not in PRESETS:
        fields.update(depth=int(v["depth"]), width=int(v["width"]))
        if C.is_residual(net):
            fields["stages"] = int(v["stages"])
    if C.is_residual(net):
        fields.update(preact=bool(v["preact"]), skipinit=bool(v["skipinit"]), wn_act=v["wn_act"])
    if tokens:
        fields.update(C.transformer_fields(v))
    group = {v["group_by"]: int(v[v["group_by"]])}
    models = tuple(
        ModelConfig(**fields, norm=norm, **(group if NORM_INFO[norm].grouped else {})) for norm in norms
    )
    probe = ProbeConfig(input=v["tokens"] if tokens else v["input"], batch_size=int(v["batch"]),
                        image_size=int(v["image"]),
                        seed=int(v["seed"]), seeds=int(v["seeds"]), device=v["device"],
                        rank_tol=float(v["rank_tol"]))
    return Selection(models, probe, lecture=bool(v["lecture"]))


MIN_UPLOAD_IMAGES = 2  # similarities and batch statistics need a pair


def with_upload(selection: Selection, upload) -> Selection:
    """The selection probed on uploaded images (a ``normlab.science.data.Upload``): the batch is those images,
    at the selection's image size; the sidebar's batch size does not apply.

    Raises:
        ValueError: fewer than two images (similarities and batch statistics need a pair).
    """
    if len(upload.names) < MIN_UPLOAD_IMAGES:
        raise ValueError(_("uploaded images: at least two are needed for a batch; got {count}").format(
            count=len(upload.names)))
    probe = upload.probe_config(image_size=selection.probe.image_size, seed=selection.probe.seed,
                                seeds=selection.probe.seeds, device=selection.probe.device,
                                rank_tol=selection.probe.rank_tol)
    return replace(selection, probe=probe)


SELECTION_KEY = "_selection"  # the last valid Selection the sidebar made, read by the pages


def current_selection() -> Selection:
    """The selection the shared sidebar produced on this run (pages call this)."""
    selection = st.session_state.get(SELECTION_KEY)
    return selection if selection is not None else build_selection(C.DEFAULTS)
