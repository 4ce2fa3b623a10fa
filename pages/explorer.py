"""Sweep explorer: a finished sweep or study from the results store, one metric over two config fields."""

import streamlit as st

from ui.compute import views
from ui.content import explorer
from ui.state.i18n import _


@st.cache_data(show_spinner=_("Reading the results…"), max_entries=4)
def load(root: str, _store, fingerprint: tuple[int, int]):
    # keyed on the folder and its fingerprint: a record written since the last read refreshes the table
    return explorer.load_results(_store)


selection = views.header(
    _("Sweep explorer"),
    _("**Look for:** how a final value moves along one config field (the x axis) for every normalizer, and "
      "whether a second field (one column each) changes the picture. The band shows how much the seeds "
      "disagree: a gap between normalizers narrower than their bands is not a difference."),
    _("Results of `normlab sweep` and `normlab study` (and the dashboard's own probes) kept in the results "
      "store that the server's operator chose (`{var}`, else the server's store). Probes: the metric at the "
      "final features (mean over its final rows), per seed. Training runs: the run's summary. Lines: mean "
      "over seeds (and over any other field that varies); band: the seeds' spread.").format(
        var=explorer.ENV_VAR),
)
store = explorer.explorer_store()
if store is None:
    st.info(_("No results store is configured on this server (set `{var}` or `NORMLAB_STORE`).").format(
        var=explorer.ENV_VAR), icon=":material/info:")
    st.stop()
data = load(str(store.root), store, explorer.fingerprint(store))
present = [name for name, table in data.items() if not table.empty]
if not present:
    st.info(_("The results store holds no results yet. Run a sweep, e.g. `normlab sweep --over "
              "norm=batchnorm,layernorm,groupnorm --over depth=4,8,16 --seeds 3`, then reload this page."),
            icon=":material/info:")
    st.stop()

kind = st.segmented_control(_("Results"), present, format_func=lambda k: _(explorer.DATASETS[k]),
                            key="explorer_kind", default=present[0], required=True)
table = data[kind]
fields = explorer.config_fields(table) or ["norm"]
metrics = explorer.metrics(table)
cols = st.columns(4)
x = cols[0].selectbox(_("x axis"), fields, index=fields.index("depth") if "depth" in fields else 0,
                      key=f"explorer_x_{kind}")
facets = [explorer.NONE, *[f for f in fields if f != x and f != "norm"]]
facet = cols[1].selectbox(_("One column per"), facets, key=f"explorer_facet_{kind}",
                         format_func=lambda f: _(f) if f == explorer.NONE else f)
default_metric = next((m for m in ("cos_sim", "final_test_acc") if m in metrics), metrics[0])
metric = cols[2].selectbox(_("Metric"), metrics, index=metrics.index(default_metric),
                          key=f"explorer_metric_{kind}")
band = cols[3].segmented_control(_("Seed band"), list(explorer.BANDS), default="min–max", required=True,
                                 format_func=_, key="explorer_band")
log_y = st.toggle(_("Log y axis"), key="explorer_log")
facet = None if facet == explorer.NONE else facet
others = [f for f in fields if f not in (x, facet, "norm")]
if others:  # what the lines average over unless narrowed here
    with st.expander(_("Filter the other fields ({fields})").format(fields=", ".join(others))):
        values = {f: explorer.field_values(table, f) for f in others}
        chosen = {f: st.multiselect(f, values[f], default=values[f], key=f"explorer_keep_{kind}_{f}")
                  for f in others}
    table = explorer.keep(table, chosen)
try:
    fig = explorer.sweep_figure(table, x, facet, metric, band=band, log_y=log_y)
except ValueError as err:
    st.warning(str(err), icon=":material/warning:")
    st.stop()
views.chart(fig, "explorer", selection)
stats = explorer.seed_stats(table, x, facet, metric, band)
st.dataframe(stats, hide_index=True, column_config=explorer.column_labels(stats.columns))
