"""Export: the snippet and CLI command shown under a view give the view's numbers; data and figure files."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import charts
from streamlit.testing.v1 import AppTest

import ui.compute.cache
from normlab import ModelConfig, ProbeConfig
from normlab.cli import main as cli_main
from normlab.ops.output import to_csv, to_json
from ui.compute import export, views

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
TIMEOUT = 300
KEYS = ["seed", "layer", "index", "kind", "metric"]


def same_numbers(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 0.0) -> None:
    """Equal rows (by norm/groups/seed/layer/index/kind/metric) and equal values, NaN and inf included."""
    keys = ["norm", "groups", *KEYS]

    def keyed(frame):
        groups = pd.to_numeric(frame["groups"], errors="coerce").fillna(-1).astype(int)  # None: not grouped
        return frame.assign(groups=groups).set_index(keys)["value"].astype(float).sort_index()

    left, right = keyed(a), keyed(b)
    assert left.index.equals(right.index)
    np.testing.assert_allclose(left.to_numpy(), right.to_numpy(), rtol=rtol, atol=0, equal_nan=True)


def run_snippet(code: str) -> pd.DataFrame:
    namespace: dict = {}
    exec(compile(code, "<snippet>", "exec"), namespace)  # noqa: S102 - the code the view shows
    return namespace["frame"]


def run_cli(command: str, tmp_path: Path) -> pd.DataFrame:
    """The command as shown, run through normlab's CLI entry point in this process."""
    argv = shlex.split(command)
    assert argv[0] == "normlab"
    out = tmp_path / "out.csv"
    argv[argv.index("--out") + 1] = str(out)
    assert cli_main(argv[1:]) == 0
    return pd.read_csv(out)


def export_code(at: AppTest) -> tuple[str, str]:
    """The Python snippet and the CLI command shown in the view's export panel."""
    codes = {c.language: c.value for c in at.code}
    return codes["python"], codes["bash"]


# --- pure -------------------------------------------------------------------------------------------------


def test_snippet_lists_only_what_differs_from_the_defaults():
    models = (ModelConfig(arch="resnet", norm="batchnorm", depth=4, width=8),
              ModelConfig(arch="resnet", norm="groupnorm", depth=4, width=8, groups=2))
    code = export.python_snippet(models, ProbeConfig(batch_size=8, image_size=8))
    assert "ProbeConfig(batch_size=8, image_size=8)" in code
    # stages=1 is what an unset stages resolves to, so the snippet leaves it out
    assert "ModelConfig(norm='groupnorm', depth=4, width=8, groups=2)" in code
    assert "skipinit" not in code


def test_presets_are_exported_by_name_not_by_their_sizes():
    code = export.python_snippet((ModelConfig(preset="vgg10", norm="layernorm"),), ProbeConfig())
    assert "ModelConfig(norm='layernorm', preset='vgg10')" in code
    command = export.cli_command((ModelConfig(preset="vgg10", norm="layernorm"),), ProbeConfig())
    assert command == "normlab probe --norm layernorm --preset vgg10 --format csv"


def test_cli_command_is_a_probe_for_one_network_and_a_sweep_over_normalizers_for_several():
    one = (ModelConfig(arch="cnn", norm="batchnorm", depth=3, width=8),)
    probe = ProbeConfig(batch_size=8, seeds=2, input="images")
    assert export.cli_command(one, probe, out="x.csv") == (
        "normlab probe --arch cnn --depth 3 --width 8 --input images --batch-size 8 --seeds 2 "
        "--format csv --out x.csv")
    several = (*one, ModelConfig(arch="cnn", norm="groupnorm", depth=3, width=8, groups=4))
    assert export.cli_command(several, probe).startswith(
        "normlab sweep --over norm=batchnorm,groupnorm --arch cnn --depth 3 --width 8 --groups 4")
    assert export.cli_command((several[1],), probe, over={"groups": [1, 2, 4, 8]}).startswith(
        "normlab sweep --over groups=1,2,4,8 --arch cnn --norm groupnorm --depth 3 --width 8 --input")


@pytest.mark.parametrize("models", [
    (ModelConfig(arch="resnet", norm="batchnorm", depth=3, width=8, skipinit=True),),
    (ModelConfig(arch="resnet", norm="none", depth=2, width=4),
     ModelConfig(arch="resnet", norm="groupnorm", depth=2, width=4, group_size=2),
     ModelConfig(arch="resnet", norm="weightnorm", depth=2, width=4, wn_act="in_branch")),
], ids=["one", "three"])
def test_snippet_and_command_reproduce_the_cached_frame_exactly(models, tmp_path):
    probe = ProbeConfig(batch_size=8, image_size=8, seeds=2)
    view = ui.compute.cache.probe_all(models, probe)
    same_numbers(run_snippet(export.python_snippet(models, probe)), view)
    same_numbers(run_cli(export.cli_command(models, probe, out="x.csv"), tmp_path), view)


def test_the_printed_command_runs_as_a_program(tmp_path):
    models = (ModelConfig(arch="mlp", norm="layernorm", depth=3, width=16),)
    probe = ProbeConfig(batch_size=8, image_size=8)
    command = export.cli_command(models, probe, out=str(tmp_path / "cli.csv"))
    normlab = shutil.which("normlab", path=str(Path(sys.executable).parent))
    if normlab is None:
        pytest.skip("the normlab console script is not installed (pip install -e .)")
    subprocess.run([normlab, *shlex.split(command)[1:]], check=True, cwd=tmp_path, timeout=300)
    frame = pd.read_csv(tmp_path / "cli.csv")
    # another process may run torch with other threads: equal up to float32 rounding
    same_numbers(frame, ui.compute.cache.probe_all(models, probe), rtol=1e-5)


def test_data_downloads_are_written_as_the_cli_writes_them():
    frame = ui.compute.cache.probe_all((ModelConfig(arch="mlp", norm="none", depth=2, width=4),),
                               ProbeConfig(batch_size=4, image_size=4))
    records = json.loads(to_json(frame))
    assert len(records) == len(frame) and set(records[0]) == set(frame.columns)
    assert pd.read_csv(io.StringIO(to_csv(frame))).shape == frame.shape


def test_the_chart_camera_exports_at_high_resolution():
    options = views.chart_config("normlab-variance")["toImageButtonOptions"]
    assert options == {"format": "png", "filename": "normlab-variance", "scale": export.FIGURE_SCALE}
    assert export.FIGURE_SCALE >= 3  # publication resolution, not screen size


# --- in the app: each view's code gives that view's numbers ----------------------------------------------


PAGES = ["pages/overview.py", "pages/variance.py", "pages/rank.py", "pages/gradients.py"]


@pytest.mark.parametrize("page", PAGES)
def test_each_views_snippet_and_command_give_the_views_numbers(page, tmp_path):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(norms="batchnorm,groupnorm", depth="3", width="8", groups="2", seeds="2")
    at.run()
    at.switch_page(page).run()
    assert not at.exception
    labels = [b.label for b in at.download_button]
    assert "Data · CSV" in labels and "Data · JSON" in labels
    snippet, command = export_code(at)
    selection = at.session_state["_selection"]
    view = ui.compute.cache.probe_all(selection.models, selection.probe)
    same_numbers(run_snippet(snippet), view)
    same_numbers(run_cli(command, tmp_path), view)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_figures_are_exported_by_the_browser_at_the_scale_the_panel_promises(lang):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(page="rank-collapse", norms="batchnorm", depth="3", width="8", lang=lang)
    at.run()
    assert not at.exception
    # every chart's camera button: a PNG at FIGURE_SCALE x its size on screen, named after the chart
    configs = [json.loads(el.proto.config) for el in at.get("plotly_chart")]
    assert len(configs) >= 3
    for config in configs:
        options = config["toImageButtonOptions"]
        assert options["format"] == "png" and options["scale"] == export.FIGURE_SCALE
        assert options["filename"].startswith("normlab-")
    # the panel downloads the data and says plainly where the figures come from: no server-side image
    assert len(at.download_button) == 2  # CSV and JSON
    (caption,) = [c.value for c in at.caption if "PNG" in c.value]
    camera = {"en": "camera button", "ko": "카메라 버튼"}[lang]
    assert f"{export.FIGURE_SCALE}" in caption and camera in caption
    if lang == "en":
        assert [b.label for b in at.download_button] == ["Data · CSV", "Data · JSON"]
        assert caption.startswith("Figures (collapse, rank, spectrum): ")


def test_the_variance_charts_numbers_are_the_snippets_numbers():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(page="variance-growth", norms="batchnorm", depth="3", width="8", var_theory="0")
    at.run()
    snippet, _ = export_code(at)
    frame = run_snippet(snippet)
    blocks = frame[(frame["kind"] == "block") & (frame["metric"] == "act_var")].sort_values("index")
    line = next(t for t in charts(at)[0].data if t.name == "BatchNorm" and t.mode == "lines+markers")
    np.testing.assert_allclose(line.y, blocks["value"].to_numpy(), rtol=1e-12)  # one seed: mean = value


def test_the_tradeoff_export_is_the_sweep(tmp_path):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(page="group-size", norms="batchnorm", depth="2", width="4")
    at.run()
    snippet, command = export_code(at)
    assert "run_sweep(" in snippet and "--over groups=1,2,4" in command
    snippet_frame = run_snippet(snippet)
    assert sorted(snippet_frame["groups"].unique()) == [1, 2, 4]
    same_numbers(run_cli(command, tmp_path), snippet_frame)
