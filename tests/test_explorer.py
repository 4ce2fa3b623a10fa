"""The Sweep explorer: a stored sweep read as per-seed final values, drawn per normalizer with seed bands."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.ops.store import ResultStore, record_key
from normlab.science.training import final_metric
from tests.test_app import charts, open_app
from tests.test_browser import (  # noqa: F401 (fixtures: page, artifacts; browser is conftest's)
    CHART_X_JS,
    LOAD_MS,
    REDRAW_MS,
    artifacts,
    page,
    wait_for_chart,
    wait_for_names,
)
from ui.content import explorer
from ui.figures.style import norm_color
from ui.server import free_port, start_server, stop_server, wait_healthy

PAGE = "pages/explorer.py"


@pytest.fixture(scope="module")
def tables(results_root):
    return explorer.load_results(ResultStore(results_root))


def test_a_stored_sweep_reads_as_one_final_value_per_config_seed_and_metric(tables):
    probes = tables["probe"]
    assert set(probes["norm"]) == {"batchnorm", "layernorm", "none"} and set(probes["depth"]) == {2, 4, 8}
    assert probes.groupby(["norm", "depth", "metric"]).size().eq(3).all()  # three seeds each
    # the engine's final value, seed by seed
    frame = run_probes(ModelConfig(arch="mlp", width=8, depth=4, norm="layernorm"),
                       ProbeConfig(batch_size=8, image_size=4, seeds=3))
    for seed in range(3):
        got = probes.query("norm == 'layernorm' and depth == 4 and metric == 'cos_sim' and seed == @seed")
        assert got["value"].item() == final_metric(frame[frame["seed"] == seed], "cos_sim")
    assert explorer.config_fields(probes) == ["norm", "depth"]


def test_training_runs_read_as_their_summary_numbers(tables):
    runs = tables["train"]
    assert {"final_test_acc", "cos_sim_init", "steps_to_target"} <= set(runs["metric"])
    assert len(runs[runs["metric"] == "final_test_acc"]) == 4  # 2 normalizers x 2 seeds
    assert "norm" in explorer.config_fields(runs)


@pytest.mark.parametrize("band, q", [("min–max", (0.0, 1.0)), ("quartiles", (0.25, 0.75))])
def test_seed_bands_span_the_seeds(tables, band, q):
    probes = tables["probe"]
    stats = explorer.seed_stats(probes, "depth", None, "cos_sim", band)
    assert list(stats["depth"][stats["norm"] == "batchnorm"]) == [2, 4, 8]  # numeric order
    row = stats[(stats["norm"] == "none") & (stats["depth"] == 8)].iloc[0]
    seeds = probes.query("norm == 'none' and depth == 8 and metric == 'cos_sim'")["value"].to_numpy()
    assert row["mean"] == pytest.approx(seeds.mean()) and row["n"] == 3
    assert (row["lo"], row["hi"]) == pytest.approx(tuple(np.quantile(seeds, q)))


def test_the_figure_has_a_line_and_band_per_normalizer_in_its_colour(tables):
    fig = explorer.sweep_figure(tables["probe"], "depth", None, "cos_sim")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert {t.name for t in lines} == {"BatchNorm", "LayerNorm", "No normalization"}
    for norm, label in (("batchnorm", "BatchNorm"), ("none", "No normalization")):
        assert next(t for t in lines if t.name == label).line.color == norm_color(norm)
    assert len([t for t in fig.data if t.fill == "toself" and t.mode == "lines"]) == 3
    assert not [t for t in explorer.sweep_figure(tables["probe"], "depth", None, "cos_sim", band="none").data
                if t.fill == "toself"]


def test_a_second_field_gives_one_column_per_value(tables):
    fig = explorer.sweep_figure(tables["probe"], "norm", "depth", "cos_sim")
    assert [a.text for a in fig.layout.annotations] == ["depth = 2", "depth = 4", "depth = 8"]
    assert fig.layout.xaxis.type == "category"


def test_filters_keep_only_the_chosen_values(tables):
    probes = tables["probe"]
    assert explorer.field_values(probes, "depth") == ["2", "4", "8"]
    kept = explorer.keep(probes, {"depth": ["2", "8"], "norm": ["none"]})
    assert set(kept["depth"]) == {2, 8} and set(kept["norm"]) == {"none"}
    assert len(kept) == len(probes[probes["depth"].isin([2, 8]) & (probes["norm"] == "none")])


def test_overflowed_seeds_are_counted_not_drawn():
    table = pd.DataFrame({"norm": ["none"] * 4, "depth": [1, 1, 2, 2], "seed": [0, 1, 0, 1],
                          "metric": "act_var", "value": [1.0, 2.0, math.inf, 3.0]})
    stats = explorer.seed_stats(table, "depth", None, "act_var")
    assert list(stats["overflow"]) == [0, 1] and list(stats["mean"]) == [1.5, 3.0]
    title = explorer.sweep_figure(table, "depth", None, "act_var").layout.title.text
    assert "1 seed values overflowed" in title


def test_an_unknown_band_or_field_is_refused_by_name(tables):
    with pytest.raises(ValueError, match="Unknown seed band 'wide'"):
        explorer.seed_stats(tables["probe"], "depth", None, "cos_sim", "wide")
    with pytest.raises(ValueError, match="Unknown field 'colour'"):
        explorer.seed_stats(tables["probe"], "colour", None, "cos_sim")


def test_the_dataset_is_the_operators_never_a_visitors(tmp_path):
    assert explorer.explorer_store({"NORMLAB_EXPLORER_STORE": str(tmp_path)}).root == tmp_path
    assert explorer.explorer_store({"NORMLAB_STORE": str(tmp_path / "s")}).root == tmp_path / "s"
    assert explorer.explorer_store({"NORMLAB_STORE": "off"}) is None


def test_records_of_another_engine_version_are_left_out(tmp_path, results_root, monkeypatch):
    shutil.copytree(results_root, tmp_path, dirs_exist_ok=True)
    import normlab.ops.store

    monkeypatch.setattr(normlab.ops.store, "ENGINE_VERSION", "99.0.0")
    assert all(t.empty for t in explorer.load_results(ResultStore(tmp_path)).values())


# --- the page -------------------------------------------------------------------------------------------


def test_the_page_opens_the_stored_sweep_and_draws_it(explorer_results):
    at = open_app(PAGE)
    assert not at.error, [e.value for e in at.error]
    names = {t.name for t in charts(at)[0].data if t.mode == "lines+markers"}
    assert names == {"BatchNorm", "LayerNorm", "No normalization"}
    line = next(t for t in charts(at)[0].data if t.name == "BatchNorm" and t.mode == "lines+markers")
    assert list(line.x) == [2, 4, 8] and line.line.color == norm_color("batchnorm")
    at.selectbox(key="explorer_metric_probe").set_value("stable_rank").run()
    assert charts(at)[0].layout.yaxis.title.text == "stable_rank"
    at.selectbox(key="explorer_x_probe").set_value("norm").run()
    at.multiselect(key="explorer_keep_probe_depth").set_value(["2", "8"]).run()
    line = next(t for t in charts(at)[0].data if t.name == "BatchNorm" and t.mode == "lines+markers")
    assert list(line.x) == ["batchnorm"] and line.customdata[0][0] == 6  # 3 seeds x the 2 depths kept
    at.selectbox(key="explorer_facet_probe").set_value("depth").run()
    assert len(charts(at)[0].layout.annotations) == 3
    at.segmented_control(key="explorer_kind").set_value("train").run()
    assert not at.exception
    assert {t.name for t in charts(at)[0].data if t.mode == "lines+markers"} == {"BatchNorm", "LayerNorm"}


def test_an_empty_or_missing_dataset_is_a_message_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_EXPLORER_STORE", str(tmp_path / "nothing-here"))
    at = open_app(PAGE)
    assert not at.exception and not at.error
    assert "holds no results yet" in at.info[0].value and not charts(at)


def test_a_record_with_no_final_rows_does_not_break_the_page(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    model, probe = ModelConfig(arch="mlp", width=4, depth=1), ProbeConfig(batch_size=2, image_size=4)
    frame = run_probes(model, probe)
    store.put("probe", record_key("probe", model, probe), frame.assign(final=False))
    monkeypatch.setenv("NORMLAB_EXPLORER_STORE", str(tmp_path))
    at = open_app(PAGE)
    assert not at.exception


# --- in a real browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def explorer_server(chromium_path, artifacts, results_root):  # noqa: F811 (imported fixtures)
    """The dashboard served with the small stored sweep as its explorer dataset."""
    port = free_port()
    env = {**os.environ, "NORMLAB_EXPLORER_STORE": str(results_root)}
    proc = start_server(port, artifacts / "streamlit-explorer.log", env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.mark.browser
def test_the_explorer_draws_the_stored_sweep_in_a_browser(explorer_server, page, artifacts):  # noqa: F811
    page.goto(explorer_server)
    wait_for_chart(page)  # the overview
    page.get_by_test_id("stSidebar").get_by_role("link", name="Sweep explorer").click()
    page.get_by_role("heading", name="Sweep explorer").wait_for(timeout=LOAD_MS)
    wait_for_chart(page)
    wait_for_names(page, {"BatchNorm", "LayerNorm", "No normalization"})
    page.wait_for_function(f"() => JSON.stringify(({CHART_X_JS})('BatchNorm')) === '[2,4,8]'",
                           timeout=REDRAW_MS)
    page.get_by_text("Training runs", exact=True).click()
    wait_for_names(page, {"BatchNorm", "LayerNorm"})
    page.screenshot(path=artifacts / "explorer.png")
    assert (artifacts / "explorer.png").stat().st_size > 10_000


def test_a_field_some_records_lack_is_listed_sorted_with_missing_last_and_filtered_as_shown():
    from ui.content import explorer

    table = pd.DataFrame({"groups": [4, None, 2, None, 16], "preset": [None, "vgg10", None, "resnet56", None],
                          "value": [1.0, 2.0, 3.0, 4.0, 5.0], "metric": "act_var", "norm": "groupnorm",
                          "seed": 0}).astype({"groups": object})
    assert explorer.field_values(table, "groups") == ["2", "4", "16", explorer.MISSING]
    assert explorer.field_values(table, "preset") == ["resnet56", "vgg10", explorer.MISSING]
    assert set(explorer.config_fields(table)) == {"groups", "preset"}  # the values are not a field
    kept = explorer.keep(table, {"groups": [explorer.MISSING, "4"]})
    assert kept["value"].tolist() == [1.0, 2.0, 4.0]
    stats = explorer.seed_stats(table, "groups", None, "act_var")
    assert len(stats) == 4
