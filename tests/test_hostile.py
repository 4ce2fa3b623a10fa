"""Hostile input through the Python API: every public function and config refuses it by name.

What ``from normlab import ...`` offers (plus the budget's check_budget and estimate_cost) is driven with
NaN, infinities, huge and negative numbers, wrong types, numpy scalars and arrays, empty, huge and endless
iterables and mappings with keys that are no names. Each call either returns or raises a ValueError or
TypeError whose message names the argument (or config field) it was given; nothing else escapes, and a
huge iterable is refused before it is expanded. The default suite tries a few examples per entry point,
the test marked ``slow`` many. The cases issue 24 found each have a named test first.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import normlab
from normlab.cli import main
from normlab.core.config import MAX_SEEDS, MAX_SWEEP_POINTS, ModelConfig, ProbeConfig, config_from_dict
from normlab.core.train_config import StudyConfig, TrainConfig
from normlab.ops.budget import BudgetExceeded, check_budget
from normlab.ops.cost import estimate_cost
from normlab.ops.run import run_probes, run_sweep
from normlab.ops.settings import ENV_VARS
from normlab.science.probes import probe_module, summarize

FEW, MANY = 12, 150  # examples per entry point: default suite, and the test marked slow

# Tiny and valid: whatever a hostile value leaves valid runs in milliseconds.
TINY_MODEL = dict(arch="mlp", norm="batchnorm", depth=2, width=8)
TINY_PROBE = dict(batch_size=4, image_size=4, device="cpu")
TINY_TRAIN = dict(steps=2, batch_size=4, image_size=4, eval_every=1, probe_after=1, device="cpu")


def tiny_model(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY_MODEL, **changes})


def tiny_probe(**changes) -> ProbeConfig:
    return ProbeConfig(**{**TINY_PROBE, **changes})


def tiny_train() -> TrainConfig:
    return TrainConfig(**TINY_TRAIN)


def tiny_study(**changes) -> StudyConfig:
    return StudyConfig(**{"archs": ("mlp",), "norms": ("batchnorm",), "width": 8, "cnn_depth": 2, "seeds": 1,
                          "train": tiny_train(), "k_steps": 1, "n_boot": 10, **changes})


def tiny_module() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                               torch.nn.Linear(4, 2))


@pytest.fixture(autouse=True)
def _no_operator_limits(monkeypatch):
    """The engine's own ceilings are under test: no NORMLAB_MAX_* limit of the environment helps them."""
    for name in ENV_VARS.values():
        monkeypatch.delenv(name, raising=False)


def _cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


# ---------------------------------------------------------------------------------------------
# The cases of issue 24, each by name

HUGE_SEEDS = "4611686018427387904"  # 2**62: ProbeConfig.seed_list once built the whole range


def test_the_cli_probe_refuses_a_seed_count_past_the_ceiling_by_name():
    code, err = _cli("probe", "--seeds", HUGE_SEEDS)
    assert code == 2
    assert err.strip() == f"normlab: error: seeds must be between 1 and {MAX_SEEDS:,}; got {HUGE_SEEDS}"


def test_the_cli_sweep_over_a_huge_seed_count_is_refused_by_name():
    code, err = _cli("sweep", "--over", f"seeds={HUGE_SEEDS}")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"seeds must be between 1 and {MAX_SEEDS:,}; got {HUGE_SEEDS}" in err


def test_probe_config_refuses_a_seed_count_past_the_ceiling_without_listing_the_seeds():
    with pytest.raises(ValueError, match=f"^seeds must be between 1 and {MAX_SEEDS:,}; got {HUGE_SEEDS}$"):
        ProbeConfig(seeds=2**62)
    assert ProbeConfig(seeds=MAX_SEEDS).seed_list[-1] == MAX_SEEDS - 1


@pytest.mark.parametrize("value", [math.nan, -1, object(), 10**100], ids=["nan", "-1", "object", "1e100"])
@pytest.mark.parametrize(("field", "words"), [
    ("archs", "Unknown architecture (archs)"),
    ("norms", "Unknown normalizer (norms)"),
    ("groups", "groups must be"),
])
def test_study_config_refuses_a_value_that_is_no_list_of_names_by_the_field(field, words, value):
    # one value is a list of one, so the field's own check names it
    with pytest.raises(ValueError) as err:
        StudyConfig(**{field: value})
    assert str(err.value).startswith(words), err.value


@pytest.mark.parametrize("value", [range(10**12), itertools.count()], ids=["range", "endless"])
@pytest.mark.parametrize("field", ["archs", "norms", "groups"])
def test_study_config_refuses_a_huge_list_before_expanding_it(field, value):
    with pytest.raises(ValueError, match=f"^{field} must list at most 1,000 values; got more$"):
        StudyConfig(**{field: value})


def test_study_config_refuses_more_runs_than_the_ceiling_before_building_them():
    with pytest.raises(ValueError, match=r"^the study would train 30,000 runs \(30 networks of archs x norms "
                                         r"x groups, seeds 1000 each\); at most 10,000$"):
        StudyConfig(archs=("cnn",) * 3, norms=("batchnorm",) * 10, seeds=1000)


def test_config_from_dict_refuses_none_by_the_argument():
    with pytest.raises(ValueError, match="^values must be a mapping of ModelConfig field names to values; "
                                         "got NoneType$"):
        config_from_dict(ModelConfig, None)


def test_config_from_dict_refuses_keys_that_are_no_field_names():
    with pytest.raises(ValueError, match=r"^values must map ModelConfig field names \(strings\) to values; "
                                         r"got the key\(s\) \[1\]$"):
        config_from_dict(ModelConfig, {1: 2})
    with pytest.raises(ValueError, match=r"key\(s\) \[1\]"):  # a mix once failed to sort
        config_from_dict(ModelConfig, {1: 2, "depth": 3})
    with pytest.raises(ValueError, match="^cls must be a normlab config class"):
        config_from_dict("ModelConfig", {})


@pytest.mark.parametrize("values", [range(10**12), range(10**100)], ids=["1e12", "1e100"])
def test_run_sweep_over_a_huge_range_is_refused_before_enumerating_it(values):
    # no NORMLAB_MAX_SWEEP_POINTS here (the fixture): the engine's own ceiling refuses it
    with pytest.raises(ValueError, match=f"^over spans .* combinations; a sweep has at most "
                                         f"{MAX_SWEEP_POINTS:,}$"):
        run_sweep(tiny_model(), tiny_probe(), {"depth": values})


def test_run_sweep_over_many_fields_is_refused_by_their_product():
    over = {"depth": list(range(1, 101)), "width": list(range(1, 101)), "seed": [0, 1]}
    with pytest.raises(ValueError, match="^over spans 20,000 combinations"):
        run_sweep(tiny_model(), tiny_probe(), over)


def test_summarize_refuses_what_is_no_frame_by_the_argument():
    with pytest.raises(ValueError, match=r"^frame must be a probe frame \(a pandas DataFrame of "
                                         r"run_probes\); got str$"):
        summarize("x")


def test_probe_module_refuses_modules_that_are_no_names():
    with pytest.raises(ValueError, match=r"^modules must name submodules of the module \(strings\); "
                                         r"got \[123\]$"):
        probe_module(tiny_module(), torch.randn(4, 3), modules=123)


def test_probe_module_refuses_integer_inputs_the_module_cannot_take_by_name():
    with pytest.raises(ValueError, match=r"^inputs torch.int64 \(4, 3\) do not run through the module: "):
        probe_module(tiny_module(), torch.ones(4, 3, dtype=torch.long))


def test_probe_module_still_takes_integer_inputs_the_module_takes():
    # token ids into an embedding: an integer batch is no mistake there
    module = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    frame = probe_module(module, torch.randint(10, (4, 3)))
    assert set(frame["metric"]) == {"grad_norm"} and len(frame) == 1


def test_check_budget_refuses_what_is_no_config_by_the_argument():
    with pytest.raises(ValueError, match="^model_config must be a normlab ModelConfig; got str$"):
        check_budget("x", "y")
    with pytest.raises(ValueError, match="^probe_config must be a normlab ProbeConfig; got str$"):
        check_budget(tiny_model(), "y")
    with pytest.raises(ValueError, match="^model_config must be a normlab ModelConfig; got str$"):
        estimate_cost("x", "y")


# Every string field of every config; a numpy array once met `value not in allowed` and said
# "The truth value of an array ... is ambiguous".
STRING_FIELDS = [(cls, f.name) for cls in (ModelConfig, ProbeConfig, TrainConfig)
                 for f in dataclasses.fields(cls) if "str" in str(f.type)]


@pytest.mark.parametrize("array", [np.array(["cnn", "mlp"]), np.array([1, 2]), np.zeros(0), np.array("cnn")],
                         ids=["strings", "ints", "empty", "0-d"])
@pytest.mark.parametrize(("cls", "field"), STRING_FIELDS, ids=[f"{c.__name__}.{f}" for c, f in STRING_FIELDS])
def test_a_numpy_array_in_a_string_field_is_refused_naming_the_field(cls, field, array):
    base = {ModelConfig: TINY_MODEL, ProbeConfig: TINY_PROBE, TrainConfig: TINY_TRAIN}[cls]
    with pytest.raises(ValueError) as err:
        cls(**{**base, field: array})
    assert field in str(err.value) and "truth value" not in str(err.value), err.value


@pytest.mark.parametrize("field", ["archs", "norms"])
def test_a_numpy_array_of_names_is_a_list_of_names_to_a_study(field):
    names = np.array(["cnn"]) if field == "archs" else np.array(["batchnorm", "layernorm"])
    study = tiny_study(**{field: names})
    assert getattr(study, field) == tuple(names)


# ---------------------------------------------------------------------------------------------
# Every entry point, driven with hostile values

# Values no argument of the API should choke on. Ints are huge, negative or tiny, never a valid
# middle-sized count that would start a long computation.
ODD_VALUES = (
    math.nan, math.inf, -math.inf, 10**100, 2**62, 2**64, -(2**63), -1, 0, -0.5, 1.5, True, False, None,
    "", "x", "batchnorm", b"x", 1j, object(), np.float64("nan"), np.float32(3.5), np.int64(-1),
    np.int64(2**62), np.bool_(True), np.array(4), np.array([1, 2]), np.array(["a", "b"]), np.zeros(0),
    np.zeros((2, 2)), [], (), {}, set(), frozenset({1}), range(10**12), range(10**100), {1: 2},
    {None: [1]}, [math.nan], [object()], [[1], [2, 3]], ["cnn", 5], torch.tensor(3), torch.zeros(2, 2),
)
hostile = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.integers(max_value=0), st.integers(min_value=2**62), st.integers(-2, 3),
    st.floats(), st.text(max_size=5),
    st.lists(st.one_of(st.integers(-2, 3), st.floats(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.one_of(st.integers(), st.none(), st.booleans()), st.lists(st.integers(-1, 2)),
                    max_size=2),
    st.builds(itertools.count),  # endless, fresh each time
    st.builds(lambda: (i for i in itertools.count())),
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One argument of one entry point: ``call(value)`` passes the value there, the rest tiny and valid."""

    name: str
    call: object
    words: tuple[str, ...]  # one of these must be in a refusal's message: the argument or field
    none_ok: bool = True  # False: None means "the default", a long run, not a hostile value


def _config_entries(cls, base) -> list[Entry]:
    return [Entry(f"{cls.__name__}.{f.name}", lambda v, f=f: cls(**{**base(), f.name: v}), (f.name,))
            for f in dataclasses.fields(cls)]


def _entries() -> list[Entry]:
    nl = normlab
    module, batch = tiny_module, lambda: torch.randn(4, 3)
    out = [
        *_config_entries(ModelConfig, lambda: TINY_MODEL),
        *_config_entries(ProbeConfig, lambda: TINY_PROBE),
        *_config_entries(TrainConfig, lambda: TINY_TRAIN),
        *_config_entries(StudyConfig, lambda: dict(archs=("mlp",), norms=("batchnorm",), width=8,
                                                   cnn_depth=2, seeds=1, train=tiny_train(), k_steps=1)),
        Entry("config_from_dict.cls", lambda v: nl.config_from_dict(v, {}), ("cls",)),
        Entry("config_from_dict.values", lambda v: nl.config_from_dict(nl.ModelConfig, v), ("values",)),
        Entry("common_divisors.widths", lambda v: nl.common_divisors(v), ("widths",)),
        Entry("make_inputs.probe_config", lambda v: nl.make_inputs(v, 0), ("probe_config",)),
        Entry("make_inputs.seed", lambda v: nl.make_inputs(tiny_probe(), v), ("seed",)),
        Entry("make_inputs.in_channels", lambda v: nl.make_inputs(tiny_probe(), 0, v), ("in_channels",)),
        Entry("resolve_device.name", lambda v: nl.resolve_device(v), ("device",)),
        Entry("build_model.config", lambda v: nl.build_model(v), ("config",)),
        Entry("build_model.input_shape", lambda v: nl.build_model(tiny_model(), v), ("input_shape",)),
        Entry("create_norm.name", lambda v: nl.create_norm(v, 8), ("normalizer",)),
        Entry("create_norm.num_channels", lambda v: nl.create_norm("groupnorm", v, groups=1),
              ("num_channels",)),
        Entry("create_norm.groups", lambda v: nl.create_norm("groupnorm", 8, groups=v), ("groups",)),
        Entry("get_normalizer.name", lambda v: nl.get_normalizer(v), ("normalizer",)),
        Entry("probe_module.module", lambda v: nl.probe_module(v, batch()), ("module",)),
        Entry("probe_module.inputs", lambda v: nl.probe_module(module(), v), ("inputs",)),
        Entry("probe_module.targets", lambda v: nl.probe_module(module(), batch(), v), ("targets",)),
        Entry("probe_module.modules", lambda v: nl.probe_module(module(), batch(), modules=v), ("modules",)),
        Entry("probe_module.rank_tol", lambda v: nl.probe_module(module(), batch(), rank_tol=v),
              ("rank_tol",)),
        Entry("probe_module.seed", lambda v: nl.probe_module(module(), batch(), seed=v), ("seed",)),
        Entry("summarize.frame", lambda v: nl.summarize(v), ("frame",)),
        Entry("applies.theory", lambda v: nl.applies(v, tiny_model()), ("theory",)),
        Entry("applies.config", lambda v: nl.applies("variance", v), ("config",)),
        Entry("gradient_theory.config", lambda v: nl.gradient_theory(v), ("config",)),
        Entry("gradient_theory.last_grad_norm", lambda v: nl.gradient_theory(tiny_model(depth=3), v),
              ("last_grad_norm",)),
        Entry("gradient_theory.rate", lambda v: nl.gradient_theory(tiny_model(depth=3), 1.0, v), ("rate",)),
        Entry("variance_theory.config", lambda v: nl.variance_theory(v), ("config",)),
        *[Entry(f"variance_theory.{arg}", lambda v, arg=arg: nl.variance_theory(
            tiny_model(arch="resnet"), **{arg: v}), (arg,))
          for arg in ("start_var", "input_var", "increment")],
        Entry("rank_theory.widths", lambda v: nl.rank_theory(v, [1, 2]), ("widths",)),
        Entry("rank_theory.group_sizes", lambda v: nl.rank_theory([8, 16], v), ("group_sizes",)),
        Entry("rank_theory.reference", lambda v: nl.rank_theory([8, 16], [1, 2], v), ("reference",)),
        Entry("rank_theory.metric", lambda v: nl.rank_theory([8, 16], [1, 2], metric=v), ("metric",)),
        Entry("bootstrap_ci.x", lambda v: nl.bootstrap_ci(v, [1.0, 2.0, 3.0], n_boot=10), ("x",)),
        Entry("bootstrap_ci.y", lambda v: nl.bootstrap_ci([1.0, 2.0, 3.0], v, n_boot=10), ("y",)),
        *[Entry(f"bootstrap_ci.{arg}", lambda v, arg=arg: nl.bootstrap_ci(
            [1.0, 2.0, 3.0], [1.0, 3.0, 2.0], **{"n_boot": 10, arg: v}), (arg,))
          for arg in ("statistic", "n_boot", "confidence", "seed")],
        Entry("spearman.x", lambda v: nl.spearman(v, [1.0, 2.0]), ("x",)),
        Entry("spearman.y", lambda v: nl.spearman([1.0, 2.0], v), ("y",)),
        Entry("run_probes.model_config", lambda v: nl.run_probes(v, tiny_probe()), ("model_config",)),
        Entry("run_probes.probe_config", lambda v: nl.run_probes(tiny_model(), v), ("probe_config",)),
        Entry("run_probes.progress", lambda v: nl.run_probes(tiny_model(), tiny_probe(), v), ("progress",),
              none_ok=False),
        Entry("run_sweep.over", lambda v: nl.run_sweep(tiny_model(), tiny_probe(), v), ("over", "sweep")),
        *[Entry(f"run_sweep.over[{field}]", lambda v, field=field: nl.run_sweep(
            tiny_model(), tiny_probe(), {field: v}), ("over", "sweep", field))
          for field in ("depth", "seeds")],
        *[Entry(f"run_sweep.{arg}", lambda v, arg=arg: nl.run_sweep(
            tiny_model(), tiny_probe(), {"depth": [1]}, **{arg: v}), (arg,), none_ok=False)
          for arg in ("progress", "backend", "address", "store")],
        Entry("run_training.model_config", lambda v: nl.run_training(v, tiny_train()), ("model_config",)),
        Entry("run_training.train_config", lambda v: nl.run_training(tiny_model(), v), ("train_config",),
              none_ok=False),
        *[Entry(f"run_training.{arg}", lambda v, arg=arg: nl.run_training(
            tiny_model(), tiny_train(), **{arg: v}), (arg,), none_ok=False)
          for arg in ("progress", "should_stop")],
        Entry("run_study.study_config", lambda v: nl.run_study(v), ("study_config",), none_ok=False),
        *[Entry(f"run_study.{arg}", lambda v, arg=arg: nl.run_study(tiny_study(), **{arg: v}), (arg,),
                none_ok=False) for arg in ("progress", "should_stop", "backend", "address", "store")],
        Entry("check_budget.model_config", lambda v: check_budget(v, tiny_probe()), ("model_config",)),
        Entry("check_budget.probe_config", lambda v: check_budget(tiny_model(), v), ("probe_config",)),
        Entry("check_budget.limits", lambda v: check_budget(tiny_model(), tiny_probe(), v), ("limits",)),
        Entry("estimate_cost.model_config", lambda v: estimate_cost(v, tiny_probe()), ("model_config",)),
        Entry("estimate_cost.probe_config", lambda v: estimate_cost(tiny_model(), v), ("probe_config",)),
    ]
    return out


ENTRIES = _entries()


def test_every_public_function_and_config_is_driven():
    driven = {e.name.split(".")[0] for e in ENTRIES}
    public = {name for name in normlab.__all__ if callable(getattr(normlab, name))}
    # what the runs return, not what a caller builds; a function without arguments
    not_driven = {"StudyResult", "TrainResult", "available_devices"}
    assert public - not_driven - driven == set()
    assert {"check_budget", "estimate_cost"} <= driven


def _drive(entry: Entry, value) -> None:
    try:
        entry.call(value)
    except (ValueError, TypeError) as err:  # BudgetExceeded is a ValueError
        message = str(err)
        assert any(word in message for word in entry.words), \
            f"{entry.name}={value!r}: {type(err).__name__} names none of {entry.words}: {message}"
        assert "truth value of an array" not in message, f"{entry.name}={value!r}: {message}"


def _hostile_for(entry: Entry):
    return hostile if entry.none_ok else hostile.filter(lambda v: v is not None)


_settings = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                       HealthCheck.differing_executors])
_by_entry = pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])


@_by_entry
@settings(max_examples=FEW, **_settings)
@given(data=st.data())
def test_a_hostile_value_is_refused_by_name_or_accepted(entry, data):
    _drive(entry, data.draw(_hostile_for(entry), label=entry.name))


@pytest.mark.slow
@_by_entry
@settings(max_examples=MANY, **_settings)
@given(data=st.data())
def test_hostile_values_many(entry, data):
    _drive(entry, data.draw(_hostile_for(entry), label=entry.name))


@pytest.mark.slow
@_by_entry
def test_every_odd_value_at_every_entry_point(entry):
    for value in ODD_VALUES:
        if value is None and not entry.none_ok:
            continue
        _drive(entry, value)


# --- The transformer's fields -------------------------------------------------------------------------


def test_a_sequence_longer_than_the_server_allows_is_refused_by_name_before_anything_runs(monkeypatch):
    from normlab.ops.settings import server_limits

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr("normlab.science.models.build_model", refuse)
    model = ModelConfig(arch="transformer", depth=1, width=8, heads=2, seq_len=4096)
    with pytest.raises(BudgetExceeded, match=r"seq_len 4096 exceeds NORMLAB_MAX_SEQ_LEN=512"):
        check_budget(model, ProbeConfig(batch_size=2), server_limits({}))


@pytest.mark.parametrize("path", ["/", "/dev/zero", "/nonexistent/file.txt"])
def test_a_text_path_that_is_no_readable_file_is_refused_by_name(path):
    model = ModelConfig(arch="transformer", depth=1, width=8, heads=2, seq_len=4)
    with pytest.raises(ValueError, match=rf"text_path '{path}' is not a readable file"):
        run_probes(model, ProbeConfig(batch_size=2, text_path=path))
