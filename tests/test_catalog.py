"""The catalog is the one table of normalizers and metrics: all read it, and a new entry runs everywhere."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from normlab import ModelConfig, ProbeConfig, cli, run_probes
from normlab.core import catalog
from normlab.core.catalog import GROUPED_NORMS, NORM_NAMES
from normlab.ops.cost import estimate_cost
from normlab.science import norms

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"arch": "resnet", "depth": 2, "width": 4}
TINY_PROBE = ProbeConfig(batch_size=4, image_size=8)


def test_the_factories_and_the_catalog_name_the_same_normalizers():
    assert set(norms.NORMALIZERS) == set(catalog.NORM_INFO)
    assert tuple(NORM_NAMES) == tuple(catalog.NORM_INFO)
    assert GROUPED_NORMS == {"groupnorm", "evonorm_s0"}


def test_a_catalog_entry_without_a_factory_is_an_error_that_names_it(monkeypatch):
    monkeypatch.setitem(catalog.NORM_INFO, "orphan", catalog.NormInfo("orphan", "Orphan", "norm"))
    with pytest.raises(RuntimeError, match=r"catalog entries without a factory \['orphan'\]"):
        norms.check_registry()
    with pytest.raises(RuntimeError, match="orphan"):
        norms.get_normalizer("orphan")


def test_the_registry_reads_labels_and_traits_from_the_catalog():
    for name, entry in norms.NORMALIZERS.items():
        info = catalog.NORM_INFO[name]
        assert (entry.label, entry.grouped, entry.batch_dependent, entry.family) == (
            info.label, info.grouped, info.batch_dependent, info.family)
    assert catalog.NORM_INFO["evonorm_b0"].slot == "activation"
    assert norms.NORMALIZERS["sws"].weights == "sws"


def test_every_metric_has_a_title_help_and_probe_kinds():
    from normlab.science.metrics import ACTIVATION_METRICS, METRICS

    assert METRICS == tuple(catalog.METRIC_INFO) and ACTIVATION_METRICS == catalog.ACTIVATION_METRICS
    for info in catalog.METRIC_INFO.values():
        assert info.title and info.help and info.kinds


def test_an_unknown_normalizer_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown normalizer 'nope'; expected one of \['batchnorm'"):
        catalog.normalizer("nope")


# --- a toy normalizer runs through the API, the CLI, the budget and every page --------------------------


def test_a_toy_normalizer_runs_through_the_api(toy_normalizer):
    frame = run_probes(ModelConfig(norm=toy_normalizer, **TINY_MODEL), TINY_PROBE)
    assert set(frame["norm"]) == {toy_normalizer}
    assert frame.loc[frame["metric"] == "grad_norm", "value"].gt(0).any()


def test_a_toy_normalizer_runs_through_the_cli(toy_normalizer, capsys):
    code = cli.main(["probe", "--norm", toy_normalizer, "--arch", "resnet", "--depth", "2", "--width", "4",
                     "--batch-size", "4", "--image-size", "8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert set(pd.read_csv(io.StringIO(out))["norm"]) == {toy_normalizer}
    assert cli.main(["list"]) == 0
    assert "Toy half-scale" in capsys.readouterr().out


def test_a_toy_normalizer_has_a_cost(toy_normalizer):
    toy = estimate_cost(ModelConfig(norm=toy_normalizer, **TINY_MODEL), TINY_PROBE)
    plain = estimate_cost(ModelConfig(norm="none", **TINY_MODEL), TINY_PROBE)
    # its catalog entry keeps two tensors per unit where an unnormalized net keeps one
    assert toy.activation_bytes > plain.activation_bytes and toy.gflop == pytest.approx(plain.gflop)


def _pages() -> list[str]:
    tree = ast.parse((ROOT / "app.py").read_text())
    return [node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "PageSpec"]


# The training page trains its own study (its own normalizer list) on first visit, not the sidebar's nets.
@pytest.mark.parametrize("page", [p for p in _pages() if p != "pages/training.py"])
def test_a_toy_normalizer_runs_on_every_page(toy_normalizer, page):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update(norms=["batchnorm", toy_normalizer], depth="2", width="4", batch="4")
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert toy_normalizer in at.session_state["norms"]  # some pages hide the normalizer box they ignore


# --- fast start ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["normlab", "normlab.core.config", "normlab.ops.budget", "normlab.cli",
                                    "normlab.core.catalog", "normlab.science.summary"])
def test_importing_the_light_modules_leaves_torch_unloaded(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_help_and_list_run_without_torch_and_the_api_names_still_load():
    code = ("import sys; from normlab.cli import main; main(['list']); main(['--help']); "
            "assert 'torch' not in sys.modules; from normlab import run_probes, NORMALIZERS; "
            "assert 'torch' in sys.modules and callable(run_probes) and 'batchnorm' in NORMALIZERS")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "batchnorm" in done.stdout and "COMMAND" in done.stdout
