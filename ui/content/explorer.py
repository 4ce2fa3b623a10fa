"""The Sweep explorer's data and figure: a results store as per-seed final values, drawn over config fields.

Pure pandas and plotly over the records of ``normlab.ops.store`` (probe records of sweeps and the dashboard,
train records of studies); no Streamlit and no torch, so the page and the tests share one reading.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from normlab.core.train_config import TrainConfig
from normlab.ops.store import ResultStore, default_store
from normlab.science.probes import MODEL_FIELDS, PROBE_FIELDS
from ui.figures.measures import norm_label
from ui.figures.style import norm_color, rgba
from ui.state.i18n import N_, _

ENV_VAR = "NORMLAB_EXPLORER_STORE"  # the operator's choice of dataset; a visitor never types a path
DATASETS = {"probe": N_("Probes at initialization"), "train": N_("Training runs")}
# Seed bands: the quantiles of the seeds' values a band spans (min–max is 0 to 1). The names are the
# options the page shows, through _().
BANDS = {N_("min–max"): (0.0, 1.0), N_("quartiles"): (0.25, 0.75), N_("none"): None}
TRAIN_FIELDS = tuple(f for f in TrainConfig.__dataclass_fields__ if f != "seed")
# What a training record's summary row measures; the rest of its columns are config fields.
TRAIN_METRICS = ("final_test_acc", "best_test_acc", "steps_to_target", "steps_done", "cos_sim_init",
                 "cos_sim_after", "grad_range_init", "grad_range_after")
MAX_FACETS = 8  # subplot columns; a field with more values is better put on the x axis
NONE = N_("(none)")  # the facet option for no facet, shown through _()
# The seed statistics' column headers where a column's name is not a term.
COLUMN_LABELS = {"mean": N_("mean"), "lo": N_("band low"), "hi": N_("band high"),
                 "overflow": N_("overflowed seeds")}


def explorer_store(environ: Mapping[str, str] | None = None) -> ResultStore | None:
    """The dataset the operator configured: ``NORMLAB_EXPLORER_STORE``, else the server's own store."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV_VAR, "").strip()
    return ResultStore(raw) if raw else default_store(environ)


def fingerprint(store: ResultStore) -> tuple[int, int]:
    """(records, newest write) of the store: changes whenever a record is added, so caches refresh."""
    files = list(store.root.glob("kind=*/key=*/part-0.parquet")) if store.root.is_dir() else []
    return len(files), max((f.stat().st_mtime_ns for f in files), default=0)


def _per_seed_final(frame: pd.DataFrame) -> pd.DataFrame:
    """One probe record's final values: per seed and metric, the mean over the final-features rows.

    The same reading as ``normlab.science.training.final_metric`` (the engine's definition of a final value).
    """
    final = frame[frame["final"].astype(bool)]
    keys = ["seed", "metric"]
    values = final.groupby(keys, sort=True)["value"].mean().reset_index()
    config = {c: frame[c].iloc[0] for c in (*MODEL_FIELDS, *PROBE_FIELDS) if c in frame}
    return values.assign(**config)


def load_results(store: ResultStore | None) -> dict[str, pd.DataFrame]:
    """Every record of this engine version as a long table per dataset: config fields, seed, metric, value."""
    out = {name: pd.DataFrame() for name in DATASETS}
    if store is None or not store.root.is_dir():
        return out
    probes = [_per_seed_final(f) for _key, f in _frames(store, "probe")]
    if probes:
        out["probe"] = pd.concat(probes, ignore_index=True)
    runs = [f for _key, f in _frames(store, "train")]
    if runs:
        rows = pd.concat(runs, ignore_index=True)
        config = [c for c in (*MODEL_FIELDS, *TRAIN_FIELDS) if c in rows]
        metrics = [m for m in TRAIN_METRICS if m in rows]
        out["train"] = rows.melt(id_vars=[*config, "seed"], value_vars=metrics, var_name="metric")
    return out


def _frames(store: ResultStore, kind: str):
    for key, _record in store.records(kind):
        frame = store.get(kind, key)
        if frame is not None and not frame.empty:
            yield key, frame


def config_fields(table: pd.DataFrame) -> list[str]:
    """The config fields that take more than one value in the table: the ones worth an axis."""
    fields = [c for c in table.columns if c not in ("seed", "metric", "value")]
    return [c for c in fields if as_text(table[c]).nunique() > 1]


MISSING = "—"  # a field a record does not have (groups of a BatchNorm net, the preset of a free one)


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():  # a whole-number field stored beside missing ones
        return str(int(value))
    return str(value)


def as_text(values: pd.Series) -> pd.Series:
    """A field's values as the filters show them; a missing value (None, NaN) as ``MISSING``."""
    return values.astype(object).map(_text)


def field_values(table: pd.DataFrame, field: str) -> list[str]:
    """The values ``field`` takes, as the text the filters show: in numeric order where they are numbers,
    missing ones last."""
    values = table[field].drop_duplicates()
    return list(as_text(values.iloc[np.argsort(_sort_key(values).to_numpy(), kind="stable")]))


def keep(table: pd.DataFrame, chosen: Mapping[str, list[str]]) -> pd.DataFrame:
    """The rows whose fields take one of the chosen values (compared as text, as the filters show them)."""
    mask = np.ones(len(table), dtype=bool)
    for field, values in chosen.items():
        mask &= as_text(table[field]).isin(values).to_numpy()
    return table[mask]


def metrics(table: pd.DataFrame) -> list[str]:
    return sorted(table["metric"].unique()) if "metric" in table else []


def _sort_key(values: pd.Series) -> pd.Series:
    """Numbers where every present value is one (missing ones, NaN, sort last), else the text."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = as_text(values)
    if numbers[(text != MISSING).to_numpy()].notna().all():
        return pd.Series(numbers.to_numpy(dtype=float), index=values.index)
    return pd.Series(text.to_numpy(dtype=str), index=values.index)


def seed_stats(table: pd.DataFrame, x: str, facet: str | None, metric: str,
               band: str = "min–max") -> pd.DataFrame:
    """Per (normalizer, facet value, x value): mean over seeds, the band's ends, seeds and overflowed seeds.

    Other fields that vary are averaged over with the seeds (``n`` counts them all). A seed whose value
    is not finite counts in ``overflow`` and leaves the mean, band and ``n`` of the finite ones.
    """
    if band not in BANDS:
        raise ValueError(f"Unknown seed band {band!r}; expected one of {', '.join(BANDS)}")
    for name in (x, facet):
        if name is not None and name not in table:
            raise ValueError(f"Unknown field {name!r}; expected one of {config_fields(table)}")
    part = table[table["metric"] == metric]
    keys = list(dict.fromkeys(["norm", *([facet] if facet else []), x]))
    lo_q, hi_q = BANDS[band] or (math.nan, math.nan)
    rows = []
    for values, group in part.groupby(keys, sort=False, dropna=False):
        v = group["value"].to_numpy(dtype=np.float64)
        finite = v[np.isfinite(v)]
        ok = finite.size > 0
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        row.update(mean=float(finite.mean()) if ok else math.nan,
                   lo=float(np.quantile(finite, lo_q)) if ok and BANDS[band] else math.nan,
                   hi=float(np.quantile(finite, hi_q)) if ok and BANDS[band] else math.nan,
                   n=int(finite.size), overflow=int(v.size - finite.size))
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*keys, "mean", "lo", "hi", "n", "overflow"])
    if out.empty:
        return out
    order = out[keys].apply(_sort_key)
    return out.loc[order.sort_values(keys).index].reset_index(drop=True)


def column_labels(columns) -> dict[str, str]:
    """``st.dataframe``'s column_config for the seed statistics: translated headers, by column name."""
    return {c: _(COLUMN_LABELS[c]) for c in columns if c in COLUMN_LABELS}


def _empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=420)
    return fig


def sweep_figure(table: pd.DataFrame, x: str, facet: str | None, metric: str, *, band: str = "min–max",
                 log_y: bool = False) -> go.Figure:
    """``metric`` over config field ``x``: a line per normalizer in its colour, a column per ``facet`` value.

    Lines are the seed mean; the shaded band spans the seeds (min–max or quartiles). Seeds that
    overflowed are left out of the line and counted in the title.
    """
    stats = seed_stats(table, x, facet, metric, band)
    if stats.empty:
        return _empty(_("No {metric} values in these results").format(metric=metric))
    facets = list(dict.fromkeys(stats[facet])) if facet else [None]
    if len(facets) > MAX_FACETS:
        raise ValueError(_("{field} takes {n} values; split by a field with at most {most}").format(
            field=facet, n=len(facets), most=MAX_FACETS))
    fig = make_subplots(rows=1, cols=len(facets), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{facet} = {v}" for v in facets] if facet else None)
    shown = set()
    for col, value in enumerate(facets, start=1):
        part = stats if facet is None else stats[as_text(stats[facet]) == as_text(pd.Series([value]))[0]]
        for norm, rows in part.groupby("norm", sort=False):
            color, name = norm_color(norm), norm_label(norm)
            xs = rows[x].astype(str) if x == "norm" or not _numeric(stats[x]) else rows[x]
            if BANDS[band] is not None:
                band_y = list(rows["hi"]) + list(rows["lo"])[::-1]  # upper edge out, lower edge back
                fig.add_trace(go.Scatter(x=list(xs) + list(xs)[::-1], y=band_y, mode="lines", fill="toself",
                                         fillcolor=rgba(color, 0.18), line={"width": 0}, hoverinfo="skip",
                                         showlegend=False, legendgroup=norm,
                                         name=_("{name} band").format(name=name)),
                              row=1, col=col)
            fig.add_trace(go.Scatter(x=xs, y=rows["mean"], mode="lines+markers", name=name, legendgroup=norm,
                                     line={"color": color}, showlegend=norm not in shown,
                                     customdata=np.stack([rows["n"], rows["overflow"]], axis=-1),
                                     hovertemplate=f"{name}<br>{x}=%{{x}}<br>{metric}=%{{y:.4g}}<br>"
                                                   + _("seeds %{customdata[0]} (overflowed %{customdata[1]})")
                                                   + "<extra></extra>"),
                          row=1, col=col)
            shown.add(norm)
        fig.update_xaxes(title_text=x, row=1, col=col,
                         type="category" if x == "norm" or not _numeric(stats[x]) else None)
    overflowed = int(stats["overflow"].sum())
    title = (_("{metric} against {field}, by {facet}") if facet else _("{metric} against {field}")).format(
        metric=metric, field=x, facet=facet)
    if overflowed:
        title += " · " + _("{n} seed values overflowed (not drawn)").format(n=overflowed)
    fig.update_yaxes(title_text=metric, type="log" if log_y else "linear", row=1, col=1)
    fig.update_layout(title=title, height=460, legend_title_text=_("normalizer"),
                      uirevision=f"explorer-{x}-{facet}")
    return fig


def _numeric(values: pd.Series) -> bool:
    return bool(pd.to_numeric(values, errors="coerce").notna().all())

