"""Inputs that try to break it: property tests over the config space, the budget, the probes and the CLI.

Every invalid config must be a ValueError that names the field (exit status 2 and one line in the CLI),
never another exception; every valid one must probe without raising, overflow included. The default
suite tries a few dozen examples per property; the tests marked ``slow`` try hundreds.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from normlab.cli import main
from normlab.core import catalog
from normlab.core.catalog import GROUPED_NORMS, NORM_NAMES
from normlab.core.config import (
    ARCHS,
    DEVICES,
    INPUTS,
    MAX_SEEDS,
    PLACEMENTS,
    PRESETS,
    TOKEN_INPUTS,
    WN_ACT_PLACEMENTS,
    ModelConfig,
    ProbeConfig,
    common_divisors,
    divisors,
)
from normlab.ops.budget import BudgetExceeded, check_budget
from normlab.ops.calibration import calibration
from normlab.ops.run import run_probes
from normlab.ops.settings import Limits
from normlab.science.metrics import METRICS
from normlab.science.probes import FRAME_COLUMNS, KINDS

FEW, MANY = 30, 400  # examples per property: default suite, and the tests marked slow
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
PROBE_FIELDS = tuple(f.name for f in dataclasses.fields(ProbeConfig))

# ---------------------------------------------------------------------------------------------
# Strategies

# Anything a URL, a CLI flag or a careless caller could hand over, valid names included.
names = st.sampled_from((*ARCHS, *NORM_NAMES, *PRESETS, *INPUTS, *DEVICES, *WN_ACT_PLACEMENTS))
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    names,
    st.lists(st.integers(0, 3), max_size=2),
    st.tuples(st.integers(0, 3)),
)


@st.composite
def any_kwargs(draw, fields):
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    return {name: draw(anything) for name in chosen}


@st.composite
def valid_model_kwargs(draw, tiny: bool = True):
    """Keyword arguments of a valid ModelConfig; tiny ones probe in well under a second."""
    if not tiny and draw(st.integers(0, 4)) == 0:
        preset = draw(st.sampled_from(tuple(PRESETS)))
        arch = PRESETS[preset]["arch"]
        kw = {"preset": preset, "norm": draw(st.sampled_from(catalog.allowed_norms(arch)))}
    else:
        arch = draw(st.sampled_from(ARCHS))
        top = (3, 8) if tiny else (64, 256)
        kw = {"arch": arch, "norm": draw(st.sampled_from(catalog.allowed_norms(arch))),
              "depth": draw(st.integers(1, top[0])), "width": draw(st.sampled_from((4, 6, 8)) if tiny
                                                                   else st.integers(1, top[1]))}
        if arch == "resnet":
            kw["stages"] = draw(st.integers(1, 2 if tiny else 4))
            kw["preact"] = draw(st.booleans())
            kw["skipinit"] = draw(st.booleans())
    if kw["norm"] == "weightnorm":
        kw["wn_act"] = draw(st.sampled_from(WN_ACT_PLACEMENTS))
    if kw["norm"] in GROUPED_NORMS:
        widths = ModelConfig(**kw).widths
        choice = draw(st.sampled_from(common_divisors(widths)))
        kw["groups" if draw(st.booleans()) else "group_size"] = choice
    kw["in_channels"] = draw(st.integers(1, 3))
    if kw.get("arch") == "transformer":  # its outputs are its vocabulary: num_classes stays unset
        kw["heads"] = draw(st.sampled_from(divisors(kw["width"])))
        kw["placement"] = draw(st.sampled_from(PLACEMENTS))
        kw["seq_len"] = draw(st.integers(2, 6) if tiny else st.integers(2, 512))
        for flag in ("causal", "ffn", "skip"):
            kw[flag] = draw(st.booleans())
        kw["qk_norm"] = kw["norm"] != "none" and draw(st.booleans())
        kw["residual_scale"] = draw(st.floats(0.01, 10.0))
    else:
        kw["num_classes"] = draw(st.integers(2, 5))
    return kw


@st.composite
def valid_probe_kwargs(draw, tiny: bool = True):
    return {
        "input": draw(st.sampled_from((None, *INPUTS))),  # None: the family's own
        "batch_size": draw(st.integers(2, 6) if tiny else st.integers(2, 4096)),
        "image_size": draw(st.integers(1, 8) if tiny else st.integers(1, 256)),
        "seed": draw(st.integers(0, 2**31)),
        "seeds": draw(st.integers(1, 2) if tiny else st.integers(1, MAX_SEEDS)),
        "device": "cpu",
        "rank_tol": draw(st.floats(1e-9, 0.5)),
    }


# Values that are wrong for one field whatever the others hold.
_NOT_A_COUNT = st.one_of(st.integers(-(10**6), 0), st.booleans(), st.floats(allow_nan=True),
                         st.text(max_size=4), st.none())
_NOT_A_NAME = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.booleans())
INVALID = {
    "arch": _NOT_A_NAME.filter(lambda v: v is not None and v not in ARCHS),  # None: the preset's
    "norm": _NOT_A_NAME.filter(lambda v: v is not None and v not in NORM_NAMES),  # None: the default
    "placement": _NOT_A_NAME.filter(lambda v: v not in PLACEMENTS),
    "heads": _NOT_A_COUNT,
    "seq_len": st.one_of(_NOT_A_COUNT, st.just(1)),
    "causal": st.one_of(st.integers(), st.text(max_size=4), st.none()),
    "qk_norm": st.one_of(st.integers(), st.text(max_size=4), st.none()),
    "ffn": st.one_of(st.integers(), st.text(max_size=4), st.none()),
    "skip": st.one_of(st.integers(), st.text(max_size=4), st.none()),
    "residual_scale": st.one_of(st.floats(max_value=0), st.just(math.inf), st.just(math.nan), st.booleans(),
                                st.text(max_size=3), st.none()),
    "depth": _NOT_A_COUNT.filter(lambda v: v is not None),
    "width": _NOT_A_COUNT.filter(lambda v: v is not None),
    "preset": _NOT_A_NAME.filter(lambda v: v is not None and v not in PRESETS),
    "preact": st.one_of(st.integers(), st.text(max_size=4), st.none()),
    "skipinit": st.one_of(st.integers(), st.text(max_size=4), st.none()),
    "wn_act": _NOT_A_NAME.filter(lambda v: v not in WN_ACT_PLACEMENTS),
    "in_channels": _NOT_A_COUNT,
    "num_classes": st.one_of(_NOT_A_COUNT.filter(lambda v: v is not None), st.just(1)),  # None: the default
    "input": _NOT_A_NAME.filter(lambda v: v is not None and v not in INPUTS + TOKEN_INPUTS),  # None: default
    "batch_size": st.one_of(_NOT_A_COUNT, st.just(1)),
    "image_size": st.one_of(_NOT_A_COUNT, st.integers(257, 10**9)),
    "seed": st.one_of(st.integers(-(10**9), -1), st.booleans(), st.floats(), st.text(max_size=3), st.none()),
    "seeds": _NOT_A_COUNT,
    "device": _NOT_A_NAME.filter(lambda v: v not in DEVICES),
    "rank_tol": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(math.nan),
                          st.booleans(), st.text(max_size=3), st.none()),
}


def _names_a_field(message: str, fields) -> bool:
    return any(name in message for name in fields)


# ---------------------------------------------------------------------------------------------
# Configs


def _any_model_config(kw):
    try:
        config = ModelConfig(**kw)
    except ValueError as err:
        assert _names_a_field(str(err), MODEL_FIELDS), f"{err} names no field of {kw}"
        return
    # an accepted config is complete, canonical and usable as a cache key
    assert config.arch in ARCHS and config.norm in NORM_NAMES
    assert config.depth >= 1 and config.width >= 1
    assert hash(config) == hash(ModelConfig(**config.to_dict()))


def _any_probe_config(kw):
    try:
        config = ProbeConfig(**kw)
    except ValueError as err:
        assert _names_a_field(str(err), PROBE_FIELDS), f"{err} names no field of {kw}"
        return
    assert config.batch_size >= 2 and 1 <= config.image_size <= 256
    hash(config)


_fast = settings(max_examples=FEW, deadline=None)
_thorough = settings(max_examples=MANY, deadline=None)

test_any_model_config_is_accepted_or_refused_by_a_value_error_naming_a_field = _fast(
    given(any_kwargs(MODEL_FIELDS))(_any_model_config))
test_any_model_config_many = pytest.mark.slow(_thorough(given(any_kwargs(MODEL_FIELDS))(_any_model_config)))
test_any_probe_config_is_accepted_or_refused_by_a_value_error_naming_a_field = _fast(
    given(any_kwargs(PROBE_FIELDS))(_any_probe_config))
test_any_probe_config_many = pytest.mark.slow(_thorough(given(any_kwargs(PROBE_FIELDS))(_any_probe_config)))


@st.composite
def one_bad_field(draw):
    """A valid model and probe config with exactly one field replaced by a value wrong for it."""
    model = draw(valid_model_kwargs(tiny=False))
    probe = draw(valid_probe_kwargs())
    fields = list(INVALID)
    if model.get("norm") in GROUPED_NORMS:
        # a bad group count or size can only be wrong against the widths where groups apply
        fields += ["groups", "group_size"]
    field = draw(st.sampled_from(fields))
    if field in ("groups", "group_size"):
        other = "group_size" if field == "groups" else "groups"
        model.pop(other, None)
        widths = ModelConfig(**model).widths
        value = draw(st.one_of(_NOT_A_COUNT.filter(lambda v: v is not None),
                               st.integers(1, 4 * max(widths)).filter(
                                   lambda g: any(w % g for w in widths))))
    else:
        value = draw(INVALID[field])
    target = probe if field in PROBE_FIELDS else model
    target[field] = value
    return model, probe, field


def _one_bad_field(case):
    model, probe, field = case
    with pytest.raises(ValueError) as err:
        ModelConfig(**model)
        ProbeConfig(**probe)
    assert field in str(err.value), f"{err.value!s} does not name {field}"


test_a_config_with_one_bad_field_is_refused_naming_that_field = _fast(given(one_bad_field())(_one_bad_field))
test_one_bad_field_many = pytest.mark.slow(_thorough(given(one_bad_field())(_one_bad_field)))


@pytest.mark.parametrize("bad", [dict(groups="abc"), dict(group_size=-3), dict(groups=0)])
def test_a_malformed_group_setting_is_refused_even_where_unused(bad):
    with pytest.raises(ValueError, match="group"):
        ModelConfig(norm="batchnorm", **bad)


def test_a_seed_beyond_64_bits_is_refused_naming_the_seed():
    with pytest.raises(ValueError, match="seed"):
        ProbeConfig(seed=2**64)


# ---------------------------------------------------------------------------------------------
# The budget


def _budget(model_kw, probe_kw):
    model, probe = ModelConfig(**model_kw), ProbeConfig(**_family_input(model_kw, probe_kw))
    calibration()  # the cost model's one-off calibration is not the check's time
    start = time.perf_counter()
    try:
        cost = check_budget(model, probe, Limits())
    except BudgetExceeded as err:
        assert "NORMLAB_MAX_" in str(err) and " by " in str(err)
    else:
        assert cost.gflop <= Limits().max_cost_gflop and cost.memory_mb <= Limits().max_memory_mb
        assert math.isfinite(cost.gflop) and cost.gflop > 0
    assert time.perf_counter() - start < 1.0


_budget_args = (valid_model_kwargs(tiny=False), valid_probe_kwargs(tiny=False))
test_the_budget_accepts_or_refuses_any_valid_config_at_once = _fast(given(*_budget_args)(_budget))
test_the_budget_many = pytest.mark.slow(_thorough(given(*_budget_args)(_budget)))


# ---------------------------------------------------------------------------------------------
# The probes


def _check_frame(frame: pd.DataFrame, probe: ProbeConfig) -> None:
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert len(frame) > 0
    assert frame["value"].dtype == np.float64
    assert set(frame["kind"]) <= set(KINDS) and set(frame["metric"]) <= set(METRICS)
    assert set(frame["seed"]) == set(probe.seed_list)
    finite = np.isfinite(frame["value"].to_numpy())
    assert frame.loc[~finite, "overflow"].all(), "a non-finite value is not flagged"


def _family_input(model_kw: dict, probe_kw: dict) -> dict:
    """A token family reads tokens: its probe takes its own default input (an image one is refused)."""
    arch = PRESETS[model_kw["preset"]]["arch"] if model_kw.get("preset") else model_kw["arch"]
    return {**probe_kw, "input": None} if catalog.family(arch).tokens else probe_kw


def _probes(model_kw, probe_kw):
    probe = ProbeConfig(**_family_input(model_kw, probe_kw))
    _check_frame(run_probes(ModelConfig(**model_kw), probe), probe)


_probe_args = (valid_model_kwargs(), valid_probe_kwargs())
_probe_settings = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
test_run_probes_gives_a_tidy_frame_for_any_tiny_config = settings(max_examples=FEW, **_probe_settings)(
    given(*_probe_args)(_probes))
test_run_probes_many = pytest.mark.slow(settings(max_examples=MANY, **_probe_settings)(
    given(*_probe_args)(_probes)))


def test_weightnorm_resnet56_like_explodes_without_raising():
    """Weight Normalization with the corrected ReLU after each addition compounds (spec section 2)."""
    model = ModelConfig(arch="resnet", norm="weightnorm", depth=9, stages=3, width=8)
    probe = ProbeConfig(batch_size=4, image_size=8)
    frame = run_probes(model, probe)
    _check_frame(frame, probe)
    final = frame[frame["final"] & (frame["metric"] == "act_var")]["value"]
    assert (final > 1e6).all()


@pytest.mark.slow
def test_weightnorm_resnet56_activations_reach_1e18_without_raising():
    probe = ProbeConfig(batch_size=8, image_size=32)
    frame = run_probes(ModelConfig(preset="resnet56", norm="weightnorm"), probe)
    _check_frame(frame, probe)
    final = frame[frame["final"] & (frame["metric"] == "act_var")]["value"]
    assert (final > 1e15).all()


def test_an_unnormalized_resnet_deep_enough_to_overflow_float32_is_flagged_not_raised():
    # Each block about doubles the variance: here float32's 3.4e38 is passed after ~350 blocks.
    model = ModelConfig(arch="resnet", norm="none", depth=400, width=4)
    probe = ProbeConfig(batch_size=4, image_size=4)
    frame = run_probes(model, probe)
    _check_frame(frame, probe)
    act = frame[frame["metric"] == "act_var"]
    assert act["overflow"].any(), "the deepest layers should overflow float32"
    assert np.isfinite(act.loc[act["index"] < 10, "value"]).all(), "the first layers are still finite"
    final = frame[frame["final"] & (frame["kind"] != "spectrum")]
    assert final["overflow"].all()


# ---------------------------------------------------------------------------------------------
# The command line

# Small limits, so that whatever the fuzzer asks for either runs in a moment or is refused.
CLI_LIMITS = {"NORMLAB_MAX_DEPTH": "12", "NORMLAB_MAX_WIDTH": "32", "NORMLAB_MAX_BATCH": "8",
              "NORMLAB_MAX_SEEDS": "2", "NORMLAB_MAX_COST": "2", "NORMLAB_MAX_SWEEP_POINTS": "4"}
GARBAGE = st.sampled_from(["", "-1", "0", "abc", "1e3", "nan", "inf", "-inf", "2.5", "None", "true",
                           "--", "😀", "0x10", " 3", "groupnorm", "vgg10"])
HUGE = "1" * 30
# Fields where the configs themselves refuse a huge number (past their hard ceilings) or read it as an
# unknown name.
HUGE_REFUSED = ("arch", "norm", "preset", "wn_act", "input", "device", "image_size", "rank_tol", "depth",
                "width", "batch_size", "seed", "seeds", "in_channels", "num_classes", "groups", "group_size")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@st.composite
def small_value_text(draw, name: str):
    """A flag value as typed: small enough to run at once, or malformed."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(GARBAGE, st.just(HUGE)) if name in HUGE_REFUSED else GARBAGE)
    small = {
        "arch": st.sampled_from(ARCHS), "norm": st.sampled_from(NORM_NAMES),
        "preset": st.sampled_from(tuple(PRESETS)), "wn_act": st.sampled_from(WN_ACT_PLACEMENTS),
        "input": st.sampled_from((*INPUTS, *TOKEN_INPUTS)),
        "device": st.sampled_from(("cpu", "auto", "cuda", "mps")),
        "depth": st.integers(-1, 4), "width": st.integers(-1, 12), "groups": st.integers(-1, 8),
        "group_size": st.integers(-1, 8), "stages": st.integers(-1, 3), "in_channels": st.integers(-1, 3),
        "num_classes": st.integers(0, 5), "batch_size": st.integers(0, 6), "image_size": st.integers(-1, 8),
        "seed": st.integers(-2, 10**6), "seeds": st.integers(-1, 2), "rank_tol": st.floats(-1, 2),
        "preact": st.sampled_from(("true", "no")), "skipinit": st.sampled_from(("yes", "off")),
        "data_dir": st.sampled_from((".", "/nonexistent")),
        "text_path": st.sampled_from((__file__, "/nonexistent", ".")),
        "placement": st.sampled_from(("pre", "post", "sideways")), "heads": st.integers(-1, 4),
        "seq_len": st.integers(-1, 6), "causal": st.sampled_from(("true", "no")),
        "residual_scale": st.floats(-1, 2), "qk_norm": st.sampled_from(("yes", "off")),
        "ffn": st.sampled_from(("true", "no")), "skip": st.sampled_from(("true", "no")),
    }
    return str(draw(small[name]))


@st.composite
def probe_argv(draw):
    argv = ["probe", "--format", draw(st.sampled_from(("csv", "json", "table")))]
    # batch and image size always small: the defaults (64, 32) would make every example slow
    fields = ["batch_size", "image_size"] + draw(st.lists(st.sampled_from(
        [f for f in (*MODEL_FIELDS, *PROBE_FIELDS) if f not in ("batch_size", "image_size")]),
        unique=True, max_size=6))
    for name in fields:
        if name in ("preact", "skipinit", "causal", "qk_norm", "ffn", "skip"):
            argv.append(draw(st.sampled_from((_flag(name), "--no-" + name.replace("_", "-")))))
        else:
            argv += [_flag(name), draw(small_value_text(name))]
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(("--bogus", "--depth", "-x", "extra"))))
    return argv


@st.composite
def sweep_argv(draw):
    argv = ["sweep", "--format", "csv", "--batch-size", "4", "--image-size", "4", "--depth", "2",
            "--width", "8"]
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from((*MODEL_FIELDS, *PROBE_FIELDS, "bogus")))
        values = draw(st.lists(small_value_text(name if name != "bogus" else "norm"), min_size=1,
                               max_size=2))
        argv += ["--over", f"{name}={','.join(values)}"]
    return argv


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with (tempfile.TemporaryDirectory() as scratch, mock.patch.dict(os.environ, CLI_LIMITS),
          redirect_stdout(out), redirect_stderr(err)):
        here = os.getcwd()
        os.chdir(scratch)  # whatever the fuzzer writes lands here
        try:
            code = main(argv)
        finally:
            os.chdir(here)
    lines = err.getvalue().splitlines()
    assert code in (0, 2), f"{argv}: exit {code}\n{err.getvalue()}"
    if code == 2:
        assert len(lines) == 1, f"{argv}: not one line:\n{err.getvalue()}"
        line = lines[0]
        assert line.startswith("normlab"), line
        assert "Traceback" not in line
        fields = (*MODEL_FIELDS, *PROBE_FIELDS, *map(_flag, (*MODEL_FIELDS, *PROBE_FIELDS)))
        assert _names_a_field(line, fields) or "NORMLAB_MAX_" in line or "argument" in line \
            or "unrecognized arguments" in line or "sweep" in line, line
    else:
        assert out.getvalue().strip(), f"{argv}: exit 0 without output"


_cli_settings = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
test_the_cli_exits_0_or_2_with_one_line_for_any_probe_flags = settings(max_examples=FEW, **_cli_settings)(
    given(probe_argv())(_cli))
test_the_cli_probe_many = pytest.mark.slow(settings(max_examples=MANY, **_cli_settings)(
    given(probe_argv())(_cli)))
test_the_cli_exits_0_or_2_with_one_line_for_any_sweep = settings(max_examples=FEW // 2, **_cli_settings)(
    given(sweep_argv())(_cli))
test_the_cli_sweep_many = pytest.mark.slow(settings(max_examples=MANY // 2, **_cli_settings)(
    given(sweep_argv())(_cli)))


FLAGS = tuple(_flag(f) for f in (*MODEL_FIELDS, *PROBE_FIELDS)) + ("--no-preact", "--no-skipinit",
                                                                     "--format", "--summary")
# The last word wins in argparse: these keep every run small whatever came before them.
SAFE_TAIL = ["--batch-size", "4", "--image-size", "4", "--depth", "2", "--width", "8", "--seeds", "1",
             "--in-channels", "3", "--num-classes", "10"]


@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(FLAGS), GARBAGE), max_size=8))
@settings(max_examples=FEW, deadline=None)
def test_the_cli_never_raises_on_arbitrary_words(words):
    # help prints and exits 0 (tested elsewhere)
    assume(not any(w.startswith(("-h", "--h")) for w in words))
    _cli(["probe", *words, *SAFE_TAIL])


# ---------------------------------------------------------------------------------------------
# Links: hostile or malformed query parameters fall back to defaults


HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["<script>alert(1)</script>", "../../etc/passwd", "%00", "1e309", "-1e309", "nan",
                     "inf", "9" * 400, "-0", "0x1f", "1_000", " 8 ", "٣", "true,false", ",,,", "batchnorm,",
                     "groupnorm,groupnorm,bogus", "resnet56", "vgg20", "512", "64", "4", "1", "0"]),
)


def _ui(name: str):
    """A module of the dashboard's ui package (skips where the package is absent)."""
    return pytest.importorskip(name, reason="needs the dashboard's ui package")


@st.composite
def hostile_params(draw):
    controls = _ui("ui.state.controls")  # the dashboard's controls table: pure Python
    keys = st.one_of(st.sampled_from(tuple(controls.BY_KEY) + (controls.PAGE_PARAM,)), st.text(max_size=8))
    return draw(st.dictionaries(keys, st.lists(HOSTILE, min_size=1, max_size=2), max_size=8))


def _hostile_link(params):
    links, controls = _ui("ui.state.links"), _ui("ui.state.controls")
    values, notices = links.check_link(params)
    for key, value in values.items():  # whatever was kept is a value its control allows
        control = controls.BY_KEY[key]
        if control.kind in ("choice", "float"):
            assert value in control.choices
        elif control.kind == "choices":
            assert value and set(value) <= set(control.choices)
        elif control.kind == "int":
            assert isinstance(value, int) and control.low <= value <= control.high
        else:
            assert isinstance(value, bool)
    dropped = set(params) - set(values) - {controls.PAGE_PARAM}
    assert len(notices) >= len(dropped)
    try:
        selection = _ui("ui.state.selection").build_selection(values)
    except ValueError:
        return  # the sidebar shows the message and keeps the last valid selection
    for model in selection.models:
        try:
            check_budget(model, selection.probe, Limits())
        except BudgetExceeded:
            pass  # shown as "Cannot probe this choice: ..." by the page


test_a_hostile_link_falls_back_to_allowed_values = settings(max_examples=FEW * 2, deadline=None)(
    given(hostile_params())(_hostile_link))
test_hostile_links_many = pytest.mark.slow(settings(max_examples=MANY * 2, deadline=None)(
    given(hostile_params())(_hostile_link)))
