"""Export from every view: the data (CSV, JSON), the figures (PNG) and the code that reproduces them.

The data files are written exactly as the ``normlab`` command line writes them, and the Python snippet
and CLI command rebuild the same configs, so a reader can check any number on the screen. The figures
are exported by the viewer's browser (plotly's own image export, each chart's camera button), not by
the server: the image is the chart as the viewer sees it, Hangul included, and the server needs no
headless Chrome (kaleido's) and no fonts.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from normlab import PRESETS, ModelConfig, ProbeConfig
from normlab.ops.output import to_csv, to_json
from ui.state.i18n import _

# The camera button's PNG: publication resolution, 4x the on-screen pixels (ui.compute.views.chart_config
# sets it, the export panel promises it).
FIGURE_SCALE = 4


def _unset_value(config, field: dataclasses.Field):
    """What a field left unset (None) resolves to in ``config``: e.g. num_classes 10, or a preset's 100."""
    if field.default is not None:
        return field.default
    try:
        return getattr(dataclasses.replace(config, **{field.name: None}), field.name)
    except ValueError:
        return None


def _non_default(config) -> dict:
    """Fields that differ from the dataclass defaults (a preset's fixed sizes are left to the preset)."""
    fixed = set(PRESETS[config.preset]) if getattr(config, "preset", None) else set()
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in fixed or value == f.default or value == _unset_value(config, f):
            continue
        out[f.name] = value
    return out


def _common(models: Sequence[ModelConfig]) -> tuple[dict, list[str]]:
    """Fields all networks share, and the normalizers in order: they differ only in ``norm``."""
    dicts = [_non_default(m) for m in models]
    shared = {k: v for k, v in dicts[0].items() if k != "norm"}
    # group settings only reach grouped normalizers; collect them from any network that has them
    for d in dicts[1:]:
        for k, v in d.items():
            if k != "norm":
                shared.setdefault(k, v)
    return shared, [m.norm for m in models]


def _arguments(config) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in _non_default(config).items())


def python_snippet(models: Sequence[ModelConfig], probe: ProbeConfig, over: dict | None = None) -> str:
    """Python that recomputes this view's frame with normlab's public API.

    Args:
        models: the compared networks, or the sweep's base network when ``over`` is given.
        over: a sweep's field -> values, as given to ``run_sweep``.
    """
    probe_args = _arguments(probe)
    model_lines = [f"ModelConfig({_arguments(m)})" for m in models]
    if over is not None:
        body = [f"model = {model_lines[0]}",
                f"frame = run_sweep(model, probe, {dict(over)!r})"]
        imports = "from normlab import ModelConfig, ProbeConfig, run_sweep"
    else:
        body = ["models = [", *[f"    {line}," for line in model_lines], "]",
                "frame = pd.concat([run_probes(m, probe) for m in models], ignore_index=True)"]
        imports = "import pandas as pd\nfrom normlab import ModelConfig, ProbeConfig, run_probes"
    return "\n".join([imports, "", f"probe = ProbeConfig({probe_args})", *body, "print(frame)"]) + "\n"


def _flags(values: dict) -> list[str]:
    args = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{name.replace('_', '-')}")
        else:
            args += [flag, str(value)]
    return args


def cli_command(models: Sequence[ModelConfig], probe: ProbeConfig, fmt: str = "csv", out: str | None = None,
                over: dict | None = None) -> str:
    """The ``normlab`` command that writes this view's frame.

    One network: ``normlab probe``. Several (they differ only in the normalizer): a sweep over ``norm``.
    With ``over``: a sweep of the first network over those fields.
    """
    tail = ["--format", fmt, *(["--out", out] if out else [])]
    probe_flags = _flags(_non_default(probe))
    if over is not None:
        sweeps = [arg for k, v in over.items() for arg in ("--over", f"{k}={','.join(map(str, v))}")]
        base = {k: v for k, v in _non_default(models[0]).items() if k not in over}
        return shlex.join(["normlab", "sweep", *sweeps, *_flags(base), *probe_flags, *tail])
    if len(models) == 1:
        return shlex.join(["normlab", "probe", *_flags(_non_default(models[0])), *probe_flags, *tail])
    shared, norms = _common(models)
    return shlex.join(["normlab", "sweep", "--over", f"norm={','.join(norms)}", *_flags(shared),
                       *probe_flags, *tail])


def export_panel(frame: pd.DataFrame, figures: dict[str, go.Figure], models: Sequence[ModelConfig],
                 probe: ProbeConfig, name: str, over: dict | None = None) -> None:
    """Download buttons for the data, where to export the figures, and the code that gives the same numbers.

    The data files are written when their button is clicked (Streamlit's deferred download data), not
    on every run of the page.

    Args:
        figures: the view's charts by name, an English word marked with ``N_`` (the panel names them
            translated); each is exported from its own camera button, drawn by the viewer's browser.
    """
    with st.expander(_("Export: data, figures and the code that reproduces them"),
                     icon=":material/download:"):
        cols = st.columns([1, 1, 2])
        cols[0].download_button(_("Data · CSV"), lambda: to_csv(frame), f"normlab-{name}.csv", "text/csv",
                                key=f"csv-{name}", on_click="ignore", icon=":material/table:")
        cols[1].download_button(_("Data · JSON"), lambda: to_json(frame), f"normlab-{name}.json",
                                "application/json", key=f"json-{name}", on_click="ignore",
                                icon=":material/data_object:")
        names = ", ".join(_(fig_name) for fig_name in figures)
        cols[2].caption(_("Figures ({names}): the camera button at the top right of each chart downloads it "
                          "as a PNG at {scale}× its size on screen, drawn by your browser as you see it.")
                        .format(names=names, scale=FIGURE_SCALE))
        st.markdown(_("**Python** (same numbers):"))
        st.code(python_snippet(models, probe, over), language="python")
        st.markdown(_("**Command line** (same numbers):"))
        st.code(cli_command(models, probe, out=f"normlab-{name}.csv", over=over), language="bash")
