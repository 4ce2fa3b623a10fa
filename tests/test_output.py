"""One rule for numbers that are not finite, in CSV and JSON, for probe, sweep, train and study alike."""

from __future__ import annotations

import importlib
import io
import json
import math

import pandas as pd
import pytest

from normlab import cli
from normlab.ops import output

FRAME = pd.DataFrame({"layer": ["a", "b", "c", "d"], "value": [math.inf, math.nan, -math.inf, 1.5],
                      "groups": [None, 4, None, 4], "width": [8, 8, 8, 8]})


def test_non_finite_numbers_are_text_and_absent_config_values_empty_or_null():
    records = json.loads(output.to_json(FRAME))
    assert [r["value"] for r in records] == ["inf", "nan", "-inf", 1.5]
    assert [r["groups"] for r in records] == [None, 4, None, 4]  # NaN in a config column is absent
    back = pd.read_csv(io.StringIO(output.to_csv(FRAME)))
    assert back["value"].iloc[[0, 2]].tolist() == [math.inf, -math.inf] and math.isnan(back["value"][1])
    assert ",nan," in output.to_csv(FRAME) and back["groups"].isna().tolist() == [True, False, True, False]


def test_an_unknown_format_is_refused_by_name():
    with pytest.raises(ValueError, match="Unknown format 'xml'"):
        output.frame_text(FRAME, "xml")


TINY = ["--depth", "1", "--width", "4", "--batch-size", "2", "--image-size", "4"]
TRAIN = ["--arch", "cnn", "--depth", "1", "--width", "4", "--steps", "1", "--batch-size", "8",
         "--image-size", "8", "--eval-every", "1", "--probe-after", "1"]


@pytest.mark.parametrize("command, target, frame_of, column", [
    (["probe", "--arch", "mlp", *TINY], "normlab.ops.run.run_probes", lambda f: f, "value"),
    (["sweep", "--arch", "mlp", *TINY, "--over", "norm=batchnorm"], "normlab.ops.run.run_sweep", lambda f: f,
     "value"),
    (["train", *TRAIN], "normlab.cli.train.run_training", lambda r: r.curve, "loss"),
    (["study", "--archs", "cnn", "--norms", "batchnorm", "--seeds", "1", "--cnn-depth", "1", "--width", "4",
      "--steps", "2", "--batch-size", "8", "--image-size", "8", "--eval-every", "1", "--probe-after", "1",
      "--k-steps", "1", "--n-boot", "2", "--show", "curves"],
     "normlab.cli.train.run_study", lambda r: r.curves, "loss"),
])
def test_probe_sweep_train_and_study_write_inf_and_nan_alike(capsys, monkeypatch, command, target, frame_of,
                                                             column):
    """The engine's frame gets an inf and a NaN in a number column; every command writes them the same."""
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(target, _wrap(getattr(importlib.import_module(module), name), frame_of, column))
    assert cli.main([*command, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r[column] for r in records[:2]] == ["inf", "nan"]
    assert cli.main([*command, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines[0].split(",").index(column)
    assert [line.split(",")[at] for line in lines[1:3]] == ["inf", "nan"]


def _wrap(real, frame_of, column):
    def patched(*args, **kwargs):
        result = real(*args, **kwargs)
        frame = frame_of(result)
        frame.loc[frame.index[0], column] = math.inf
        frame.loc[frame.index[1], column] = math.nan
        return result

    return patched
