"""The Streamlit pieces every page shares: header, measuring with errors shown, the chart, the export.

Pages stay descriptions of their UI; what they have in common lives here.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from normlab.serving import QueueTimeout
from ui import cache
from ui.export import export_panel
from ui.figures import lecture_style
from ui.sidebar import Selection, current_selection

# Plotly's own export (the camera button): PNG at 4x the on-screen size, for papers and slides.
EXPORT_SCALE = 4


def header(title: str, look_for: str, definition: str) -> Selection:
    """Title, what to look for and the exact metric definition; returns the sidebar's selection."""
    st.title(title)
    st.markdown(look_for)
    st.caption(definition)
    return current_selection()


def measure(selection: Selection) -> pd.DataFrame | None:
    """Probe every compared network (cached); an engine refusal becomes an error naming the field."""
    try:
        with st.spinner("Probing at initialization…", show_time=True):
            return cache.probe_all(selection.models, selection.probe)
    except (ValueError, QueueTimeout) as err:
        st.error(f"Cannot probe this choice: {err}", icon=":material/error:")
        return None


def chart_config(filename: str, image_format: str = "png") -> dict:
    """Plotly config: the modebar's camera exports the figure at publication resolution."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": image_format, "filename": filename, "scale": EXPORT_SCALE},
    }


def chart(fig: go.Figure, key: str, selection: Selection) -> None:
    """Draw a figure under a fixed key, so its zoom (``uirevision``) survives reruns."""
    if selection.lecture:
        fig = lecture_style(fig)
    st.plotly_chart(fig, key=key, config=chart_config(f"normlab-{key}"))


def export(frame: pd.DataFrame, figures: dict[str, go.Figure], selection: Selection, name: str, *,
           models=None, over: dict | None = None) -> None:
    """The export panel under a view: data, figures, and the code that reproduces the numbers.

    Args:
        models: the networks the frame came from (default: the selection's); a sweep's base network.
        over: the sweep's field -> values, when the frame is a sweep.
    """
    if not selection.lecture:
        export_panel(frame, figures, models or selection.models, selection.probe, name, over)
