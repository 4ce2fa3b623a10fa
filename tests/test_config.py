"""Configs refuse nonsense before anything is built, and name the field, the value and what is allowed."""

import dataclasses

import pytest

from normlab.core.config import PRESETS, ModelConfig, ProbeConfig, common_divisors, config_from_dict

VALID = [
    dict(arch="mlp", norm="batchnorm", depth=1, width=1),
    dict(arch="cnn", norm="groupnorm", width=8, groups=4),
    dict(arch="cnn", norm="groupnorm", width=8, group_size=8),
    dict(arch="resnet", norm="evonorm_s0", width=16, stages=3, group_size=4),
    dict(preset="resnet56", norm="sws"),
    dict(preset="resnet56", depth=9, width=32),
    dict(preset="vgg10", arch="cnn"),
    dict(arch="resnet", norm="weightnorm", wn_act="in_branch", skipinit=True, preact=True),
]

INVALID = [
    (dict(norm="bn"), r"Unknown normalizer \(norm\) 'bn'; expected one of 'none', 'batchnorm'"),
    (dict(arch="vit"), r"Unknown architecture \(arch\) 'vit'; expected one of 'mlp'"),
    (dict(preset="resnet50"), r"Unknown preset 'resnet50'; expected one of 'vgg10', 'vgg20', 'resnet56'"),
    (dict(depth=0), r"depth must be >= 1; got 0"),
    (dict(width=-3), r"width must be >= 1; got -3"),
    (dict(depth=2.5), r"depth must be a whole number >= 1; got 2.5"),
    (dict(depth=True), r"depth must be a whole number"),
    (dict(norm="groupnorm", width=8, groups=3),
     r"Number of groups \(3\) does not divide the width \(8\); allowed: 1, 2, 4, 8"),
    (dict(norm="groupnorm", width=8, group_size=16),
     r"group_size 16 is larger than the width 8; allowed: 1, 2, 4, 8"),
    (dict(norm="groupnorm", width=12, group_size=5), r"group_size 5 does not divide the width 12"),
    (dict(norm="groupnorm", width=8, groups=2, group_size=4), r"give groups or group_size, not both"),
    (dict(norm="groupnorm", width=8, groups=0), r"groups must be >= 1; got 0"),
    (dict(preset="resnet56", depth=3), r"preset 'resnet56' fixes depth=9; got depth=3"),
    (dict(preset="vgg10", width=32), r"preset 'vgg10' fixes width=64; got width=32"),
    (dict(preset="vgg10", arch="mlp"), r"preset 'vgg10' fixes arch='cnn'; got arch='mlp'"),
    (dict(arch="cnn", stages=2), r"stages applies to arch 'resnet' only"),
    (dict(arch="mlp", skipinit=True), r"preact and skipinit apply to arch 'resnet' only"),
    (dict(skipinit="yes"), r"skipinit must be true or false; got 'yes'"),
    (dict(stages=9), r"stages must be between 1 and 6; got 9"),
    (dict(wn_act="before"), r"Unknown wn_act 'before'; expected one of 'after_add', 'in_branch'"),
    (dict(num_classes=1), r"num_classes must be >= 2; got 1"),
]


@pytest.mark.parametrize("kwargs", VALID)
def test_valid_configs_are_accepted(kwargs):
    ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", INVALID)
def test_invalid_configs_raise_a_value_error_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_configs_are_frozen_and_hashable():
    cfg = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.depth = 3
    assert hash(cfg) == hash(ModelConfig())


def test_sizes_come_from_the_preset():
    cfg = ModelConfig(preset="resnet56")
    assert (cfg.arch, cfg.depth, cfg.width, cfg.stages) == ("resnet", 9, 32, 3)
    assert [w for w, _ in cfg.plan] == [32] * 9 + [64] * 9 + [128] * 9
    assert [s for _, s in cfg.plan].count(2) == 2


def test_vgg_presets_have_the_papers_widths():
    widths = [w for w, _ in ModelConfig(preset="vgg10").plan]
    assert widths == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    plan20 = ModelConfig(preset="vgg20").plan
    assert len(plan20) == 20 and plan20[0][0] == 64 and plan20[-1][0] == 512
    assert all(PRESETS[name]["depth"] == len(PRESETS[name].get("plan", ())) for name in ("vgg10", "vgg20"))


def test_group_settings_are_dropped_where_the_normalizer_has_no_groups():
    assert ModelConfig(norm="batchnorm", groups=3) == ModelConfig(norm="batchnorm")


def test_default_group_count_divides_every_width():
    cfg = ModelConfig(norm="groupnorm", width=48, stages=2)
    assert cfg.groups == 16 and all(w % cfg.groups == 0 for w in cfg.widths)


def test_group_size_sets_groups_per_layer_width():
    cfg = ModelConfig(norm="groupnorm", width=16, stages=3, group_size=4)
    assert [cfg.groups_at(w) for w in cfg.widths] == [4, 8, 16]
    assert ModelConfig(norm="groupnorm", width=16, stages=3, groups=4).groups_at(64) == 4


def test_group_choices_offered_are_the_common_divisors():
    assert common_divisors((16, 32, 64)) == [1, 2, 4, 8, 16]


PROBE_INVALID = [
    (dict(input="cifar"), r"Unknown input 'cifar'; expected one of 'gaussian', 'images', 'digits'"),
    (dict(batch_size=1), r"batch_size must be >= 2; got 1"),
    (dict(image_size=1000), r"image_size must be between 1 and 256; got 1000"),
    (dict(seeds=0), r"seeds must be >= 1; got 0"),
    (dict(seed=-1), r"seed must be >= 0; got -1"),
    (dict(device="tpu"), r"Unknown device 'tpu'; expected one of 'auto', 'cpu', 'cuda', 'mps'"),
    (dict(rank_tol=0), r"rank_tol must be a number between 0 and 1"),
]


@pytest.mark.parametrize("kwargs, message", PROBE_INVALID)
def test_invalid_probe_configs_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProbeConfig(**kwargs)


def test_probe_config_lists_its_seeds():
    assert ProbeConfig(seed=3, seeds=2).seed_list == (3, 4)


def test_config_from_dict_refuses_unknown_fields_by_name():
    with pytest.raises(ValueError, match=r"Unknown ModelConfig field\(s\) \['depht'\]"):
        config_from_dict(ModelConfig, {"depht": 3})
    assert config_from_dict(ModelConfig, {"depth": 3}).depth == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=10**12), r"depth must be between 1 and 10,000; got 1000000000000"),
        (dict(width=10**9), r"width must be between 1 and 65,536"),
        (dict(norm="batchnorm", groups="abc"), r"groups must be a whole number >= 1; got 'abc'"),
        (dict(norm="layernorm", group_size=-3), r"group_size must be >= 1; got -3"),
    ],
)
def test_hostile_sizes_are_refused_by_arithmetic_before_any_plan_is_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_a_seed_past_the_ceiling_is_refused_naming_the_seed():
    with pytest.raises(ValueError, match=r"seed must be between 0 and"):
        ProbeConfig(seed=2**64)


def test_divisors_are_found_in_order():
    from normlab.core.config import divisors

    assert divisors(36) == [1, 2, 3, 4, 6, 9, 12, 18, 36]
    assert divisors(1) == [1] and divisors(13) == [1, 13]


# The paper's layer lists (spec section 2), written out in the spec's own notation: w/2 = stride 2.
SPEC_LAYERS = {
    "vgg10": "64, 64/2, 128, 128/2, 256, 256/2, 512, 512/2, 512, 512",
    "vgg20": "64, 64, 64, 64/2, 128, 128, 128, 128/2, 256, 256, 256, 256/2, 256, 256, 256, 256/2, "
             "512, 512, 512, 512",
    # ResNet-56: three stages of 9 blocks, widths 32/64/128, stride 2 at the first block of stages 2 and 3
    "resnet56": ", ".join(["32"] * 9 + ["64/2"] + ["64"] * 8 + ["128/2"] + ["128"] * 8),
}


def _spec_plan(text: str) -> list[tuple[int, int]]:
    return [(int(w.split("/")[0]), 2 if "/" in w else 1) for w in text.split(", ")]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_presets_layer_widths_and_strides_are_the_spec_list(preset):
    assert list(ModelConfig(preset=preset).plan) == _spec_plan(SPEC_LAYERS[preset])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_presets_classify_100_classes_with_the_paper_head_and_free_nets_10(preset):
    cfg = ModelConfig(preset=preset)
    assert cfg.num_classes == 100 and cfg.paper_head
    assert ModelConfig(preset=preset, num_classes=10).num_classes == 10
    assert ModelConfig(arch="cnn").num_classes == 10 and not ModelConfig(arch="cnn").paper_head
