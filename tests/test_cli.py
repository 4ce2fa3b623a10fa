"""The command line: every config field has a flag, outputs parse, bad input is one line and exit 2."""

import dataclasses
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from normlab import cli
from normlab.cli import build_parser, common, main
from normlab.cli.common import parse_over
from normlab.core.catalog import NORM_NAMES
from normlab.core.config import PRESETS, ModelConfig, ProbeConfig
from normlab.ops.run import run_probes
from normlab.ops.settings import ENV_VARS
from normlab.science.metrics import METRICS
from normlab.science.norms import NORMALIZERS
from normlab.science.probes import FRAME_COLUMNS, SUMMARY_STATS

TINY = ["--depth", "2", "--width", "8", "--batch-size", "4", "--image-size", "8"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- list --------------------------------------------------------------------------------------------------


def test_list_shows_every_normalizer_with_its_label_and_every_metric_preset_and_device(capsys):
    code, out, err = _run(capsys, "list")
    assert code == 0 and err == ""
    for name in NORM_NAMES:
        assert f"  {name} " in out and NORMALIZERS[name].label in out
    for name in (*METRICS, *PRESETS, "gaussian", "images", "digits", "mlp", "cnn", "resnet", "cpu"):
        assert name in out


def test_list_json_holds_the_same_catalogue(capsys):
    code, out, _ = _run(capsys, "list", "--format", "json", "--devices")
    info = json.loads(out)
    assert code == 0
    assert list(info["normalizers"]) == list(NORM_NAMES)
    assert list(info["metrics"]) == list(METRICS)
    assert set(info["presets"]) == set(PRESETS) and "cpu" in info["devices"]["available"]


def test_python_dash_m_normlab_list_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "normlab", "list"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "batchnorm" in done.stdout and "grad_norm" in done.stdout


# --- flags -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["probe", "sweep"])
def test_every_config_field_has_a_flag_named_after_it(command):
    sub = next(a for a in build_parser()._actions if isinstance(a, cli.argparse._SubParsersAction))
    flags = {s for action in sub.choices[command]._actions for s in action.option_strings}
    for cls in (ModelConfig, ProbeConfig):
        for field in dataclasses.fields(cls):
            assert "--" + field.name.replace("_", "-") in flags


def test_flags_reach_the_configs_with_their_types():
    args = build_parser().parse_args(["probe", "--norm", "groupnorm", "--group-size", "2", "--width", "8",
                                      "--preact", "--rank-tol", "0.01", "--seeds", "3", "--input", "images"])
    model, probe = common.configs_from_args(args)
    assert model == ModelConfig(norm="groupnorm", group_size=2, width=8, preact=True)
    assert probe == ProbeConfig(rank_tol=0.01, seeds=3, input="images")


def test_over_values_are_parsed_to_each_fields_type():
    over = parse_over(["norm=batchnorm,layernorm", "groups=1,2,4", "preact=true,false", "rank-tol=0.1",
                       "preset=none,resnet56", "group_size=none,2"])
    assert over == {"norm": ["batchnorm", "layernorm"], "groups": [1, 2, 4], "preact": [True, False],
                    "rank_tol": [0.1], "preset": [None, "resnet56"], "group_size": [None, 2]}
    assert parse_over(["norm=none"]) == {"norm": ["none"]}  # "none" is a normalizer, not a missing value


# --- probe -------------------------------------------------------------------------------------------------


def test_probe_csv_parses_with_pandas_and_equals_the_api_frame(capsys):
    code, out, err = _run(capsys, "probe", *TINY, "--norm", "layernorm")
    assert code == 0 and err == ""
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert {"act_var", "grad_norm", "res_var"} <= set(frame["metric"]) <= set(METRICS)
    expected = run_probes(ModelConfig(norm="layernorm", depth=2, width=8),
                          ProbeConfig(batch_size=4, image_size=8))
    assert frame["layer"].tolist() == expected["layer"].tolist()
    np.testing.assert_allclose(frame["value"], expected["value"], rtol=1e-12)


def test_probe_json_parses_to_one_record_per_row(capsys):
    code, out, _ = _run(capsys, "probe", *TINY, "--arch", "mlp", "--format", "json")
    records = json.loads(out)
    assert code == 0
    assert set(records[0]) == set(FRAME_COLUMNS)
    assert {r["arch"] for r in records} == {"mlp"} and records[0]["groups"] is None
    assert all(isinstance(r["value"], float) for r in records)


def test_out_writes_the_file_and_leaves_stdout_empty(capsys, tmp_path):
    target = tmp_path / "probe.csv"
    code, out, _ = _run(capsys, "probe", *TINY, "--out", str(target))
    assert code == 0 and out == ""
    assert len(pd.read_csv(target)) > 0


def test_summary_has_mean_min_max_over_seeds(capsys):
    code, out, err = _run(capsys, "probe", *TINY, "--seeds", "2", "--summary")
    frame = pd.read_csv(io.StringIO(out))
    assert code == 0
    assert set(SUMMARY_STATS) <= set(frame.columns) and (frame["n"] == 2).all()
    assert (frame["min"] <= frame["mean"]).all() and (frame["mean"] <= frame["max"]).all()
    # one progress line per seed on stderr
    assert [line.split(":")[0] for line in err.splitlines()] == ["probe seed 1/2", "probe seed 2/2"]


def test_one_seed_runs_quietly_on_stderr(capsys):
    code, _, err = _run(capsys, "probe", *TINY, "--format", "table")
    assert code == 0 and err == ""


def test_table_shows_every_layer_with_the_seed_mean_of_each_metric(capsys):
    code, out, _ = _run(capsys, "probe", *TINY, "--seeds", "2", "--format", "table")
    assert code == 0
    frame = run_probes(ModelConfig(depth=2, width=8), ProbeConfig(batch_size=4, image_size=8, seeds=2))
    for layer in frame["layer"].unique():
        assert layer in out
    block = frame[(frame["layer"] == "features.2") & (frame["metric"] == "act_var")]["value"].mean()
    line = next(line for line in out.splitlines() if " features.2 " in line and " block " in line)
    assert f"{block:.4g}" in line.split()
    assert "Gram eigenvalues" in out


def test_overflowed_numbers_are_written_as_inf_and_nan(capsys, monkeypatch):
    frame = run_probes(ModelConfig(arch="mlp", depth=2, width=8), ProbeConfig(batch_size=4, image_size=8))
    frame.loc[0, "value"], frame.loc[1, "value"], frame.loc[2, "value"] = math.inf, math.nan, -math.inf
    monkeypatch.setattr("normlab.ops.run.run_probes", lambda *a, **k: frame)
    argv = ["probe", "--arch", "mlp", *TINY]
    _, out, _ = _run(capsys, *argv)
    first = dict(zip(out.splitlines()[0].split(","), out.splitlines()[1].split(","), strict=True))
    assert first["value"] == "inf" and first["groups"] == ""  # overflow is inf, a None config is empty
    assert pd.read_csv(io.StringIO(out))["value"].iloc[:3].tolist()[::2] == [math.inf, -math.inf]
    _, out, _ = _run(capsys, *argv, "--format", "json")
    assert [r["value"] for r in json.loads(out)[:3]] == ["inf", "nan", "-inf"]
    code, out, _ = _run(capsys, *argv, "--format", "table")
    assert code == 0 and "inf" in out


# --- sweep -------------------------------------------------------------------------------------------------


def test_sweep_runs_every_point_of_the_product_with_progress(capsys):
    code, out, err = _run(capsys, "sweep", *TINY, "--over", "norm=batchnorm,layernorm", "--over", "depth=1,2")
    frame = pd.read_csv(io.StringIO(out))
    assert code == 0
    points = frame[["norm", "depth"]].drop_duplicates().itertuples(index=False, name=None)
    assert sorted(points) == [("batchnorm", 1), ("batchnorm", 2), ("layernorm", 1), ("layernorm", 2)]
    assert len(err.splitlines()) == 4 and err.splitlines()[-1].startswith("sweep 4/4")


def test_sweep_keeps_a_flag_that_only_some_points_use(capsys):
    code, out, _ = _run(capsys, "sweep", *TINY, "--groups", "2", "--over", "norm=batchnorm,groupnorm")
    frame = pd.read_csv(io.StringIO(out))
    assert code == 0
    assert set(frame.loc[frame["norm"] == "groupnorm", "groups"]) == {2}


def test_sweep_table_has_one_row_per_point(capsys):
    code, out, _ = _run(capsys, "sweep", *TINY, "--norm", "groupnorm", "--over", "groups=1,8",
                        "--format", "table")
    rows = [line.split() for line in out.splitlines()[2:]]
    assert code == 0 and [row[0] for row in rows] == ["1", "8"]
    assert "grad_growth" in out


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["probe", "--groups", "3", "--width", "8", "--norm", "groupnorm"], "groups"),
    (["probe", "--norm", "foo"], "norm"),
    (["probe", "--depth", "0"], "depth"),
    (["probe", "--preset", "resnet56", "--depth", "3"], "depth"),
    (["probe", "--device", "cuda"], "device 'cuda'"),
    (["probe", "--batch-size", "1"], "batch_size"),
    (["probe", "--seed", "-1"], "seed"),
    (["probe", "--depth", "x"], "--depth"),
    (["probe", "--format", "xml"], "--format"),
    (["probe", "--out", "/no/such/folder/x.csv"], "--out"),
    (["probe", *TINY, "--out", ""], "--out must name a file"),
    (["probe", *TINY, "--out", "/"], "it is a folder"),
    (["probe", *TINY, "--out", "/dev/full"], "not a regular file"),
    (["probe", *TINY, "--out", "/dev/null"], "not a regular file"),
    (["sweep", "--over", "bogus=1"], "bogus"),
    (["sweep", "--over", "depth=2,x"], "depth"),
    (["sweep", "--over", "norm"], "--over"),
    (["sweep", "--over", "device=cpu,cuda"], "device 'cuda'"),
    (["sweep", "--width", "8", "--groups", "3", "--over", "norm=batchnorm,groupnorm"], "groups=3"),
    (["sweep"], "--over"),
    ([], "COMMAND"),
    (["fly"], "fly"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_exits_2_with_one_line_naming_the_problem(capsys, monkeypatch, argv, words):
    monkeypatch.setattr("normlab.science.device.available_devices", lambda: ["cpu"])
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err


def test_help_exits_0(capsys):
    code, out, _ = _run(capsys, "probe", "--help")
    assert code == 0 and "--group-size" in out and "--format" in out


def test_a_sweep_refuses_a_flag_that_cannot_apply_at_some_point_instead_of_dropping_it(capsys):
    code, out, err = _run(capsys, "sweep", "--over", "arch=mlp,cnn", "--stages", "2", *TINY)
    assert code == 2 and out == ""
    assert "stages applies to arch 'resnet' only" in err and "--stages" in err and len(err.splitlines()) == 1


def test_a_flag_given_beside_over_reaches_every_point(capsys):
    code, out, _ = _run(capsys, "sweep", "--arch", "resnet", "--stages", "2", "--over", "skipinit=false,true",
                        *TINY)
    assert code == 0 and set(pd.read_csv(io.StringIO(out))["stages"]) == {2}


def test_a_fifo_out_is_refused_at_once_before_probing(capsys, tmp_path, monkeypatch):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    monkeypatch.setattr("normlab.ops.run.run_probes",
                        lambda *a, **k: pytest.fail("probed before checking --out"))
    code, out, err = _run(capsys, "probe", *TINY, "--out", str(fifo))  # opening it would block forever
    assert code == 2 and "not a regular file" in err


def test_an_unwritable_out_is_refused_before_probing(capsys, monkeypatch, tmp_path):
    path = tmp_path / "read-only.csv"
    path.write_text("kept\n")
    path.chmod(0o444)
    if os.geteuid() == 0:  # root writes any mode; sysctl files refuse even root
        path = "/proc/sys/kernel/version"
    monkeypatch.setattr("normlab.ops.run.run_probes",
                        lambda *a, **k: pytest.fail("probed before checking --out"))
    code, _, err = _run(capsys, "probe", *TINY, "--out", str(path))
    assert code == 2 and f"cannot write --out '{path}'" in err


def test_without_the_variables_the_cli_applies_no_operator_limit_and_with_them_it_does(capsys, monkeypatch):
    for name in ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)
    wide = ["probe", "--arch", "mlp", "--depth", "1", "--width", "2048", "--batch-size", "4",
            "--image-size", "4", "--seeds", "20"]  # over the server's width 1024 and 16 seeds
    code, out, err = _run(capsys, *wide)
    assert code == 0 and len(out.splitlines()) > 1
    monkeypatch.setenv("NORMLAB_MAX_WIDTH", "1024")
    code, out, err = _run(capsys, *wide)
    assert code == 2 and out == "" and "width 2048 exceeds NORMLAB_MAX_WIDTH=1024 by 2x" in err
    monkeypatch.delenv("NORMLAB_MAX_WIDTH")
    monkeypatch.setenv("NORMLAB_MAX_SECONDS", "0.001")
    code, out, err = _run(capsys, *wide)
    assert code == 2 and "exceeds the limit 0.001 s (NORMLAB_MAX_SECONDS)" in err


# --- the transformer's flags ---------------------------------------------------------------------------

TF = ["--arch", "transformer", "--depth", "2", "--width", "16", "--heads", "2", "--seq-len", "8",
      "--batch-size", "4", "--store", "off"]


def test_the_transformer_flags_build_the_config_they_name(capsys):
    args = build_parser().parse_args(["probe", *TF[:-2], "--placement", "peri", "--no-causal",
                                      "--residual-scale", "0.5", "--qk-norm", "--norm", "rmsnorm",
                                      "--no-ffn", "--no-skip", "--text", "README.md"])
    model, probe = common.configs_from_args(args)
    assert model == ModelConfig(arch="transformer", depth=2, width=16, heads=2, seq_len=8, placement="peri",
                                causal=False, residual_scale=0.5, qk_norm=True, norm="rmsnorm", ffn=False,
                                skip=False)
    assert (probe.input, probe.text_path) == ("text", "README.md")


def test_a_transformer_probe_on_a_text_file_prints_the_frame_of_the_api(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog " * 20)
    code, out, err = _run(capsys, "probe", *TF[:-2], "--text", str(text))
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    expected = run_probes(ModelConfig(arch="transformer", depth=2, width=16, heads=2, seq_len=8),
                          ProbeConfig(batch_size=4, text_path=str(text)))
    assert np.allclose(frame["value"], expected["value"], equal_nan=True)
    assert set(frame["input"]) == {"text"} and "blocks.1.ffn.w2" in set(frame["layer"])


def test_a_sweep_over_depth_and_placement_takes_several_fields_after_one_over(capsys):
    code, out, err = _run(capsys, "sweep", *TF, "--over", "depth=1,2", "placement=post,pre", "--format",
                          "table")
    assert code == 0, err
    points = out.split("# log-log slope")[0]  # the depth-slope table follows (tests/test_transformer_laws.py)
    rows = [line.split() for line in points.splitlines()[2:]]
    assert [r[:2] for r in rows] == [["1", "post"], ["1", "pre"], ["2", "post"], ["2", "pre"]]
    assert "token_cos_sim" in out.splitlines()[1]


@pytest.mark.parametrize(("argv", "words"), [
    (["--heads", "3"], "heads (3) must divide the width (16)"),
    (["--input", "images"], "input 'images' does not apply to arch 'transformer'"),
    (["--norm", "groupnorm"], "'groupnorm' does not apply to arch 'transformer'"),
    (["--seq-len", "1"], "seq_len must be"),
])
def test_bad_transformer_flags_are_one_line_and_exit_2(capsys, argv, words):
    code, out, err = _run(capsys, "probe", *TF[:-2], *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_the_transformer_flags_are_refused_on_the_other_families(capsys):
    code, _, err = _run(capsys, "probe", *TINY, "--arch", "mlp", "--no-ffn")
    assert code == 2 and "ffn applies to arch 'transformer' only" in err


def test_list_says_which_normalizers_each_family_takes(capsys):
    code, out, _ = _run(capsys, "list", "--format", "json")
    arch_norms = json.loads(out)["arch_norms"]
    assert code == 0 and arch_norms["transformer"] == ["layernorm", "rmsnorm", "dyt", "derf", "none"]
    assert "rmsnorm" in arch_norms["mlp"] and "rmsnorm" not in arch_norms["cnn"]
