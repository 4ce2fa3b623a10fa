"""A new architecture family is a builder and one catalog row: a toy family, registered for one test,
runs through the configs, the CLI, the budget, the rank ceiling and every dashboard page."""

from __future__ import annotations

import pytest
from helpers import open_app, registered_pages
from torch import nn

from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.cli import main
from normlab.core import catalog, plans
from normlab.ops.budget import BudgetExceeded, check_budget
from normlab.ops.cost import estimate_cost
from normlab.ops.settings import local_limits
from normlab.science.models import Layer, Net, make_head, make_linear

TOY = "toyfamily"


def build_toy(config: ModelConfig, normalizer, input_shape: tuple[int, ...]) -> Net:
    """A toy family: an MLP whose hidden layers alternate width and half width."""
    layers, f_in = [nn.Flatten()], input_shape[0] * input_shape[1] * input_shape[2]
    for i in range(config.depth):
        width = config.width if i % 2 == 0 else config.width // 2
        layers.append(Layer(make_linear(normalizer, f_in, width), normalizer, width, None))
        f_in = width
    return Net(config, nn.Sequential(*layers), make_head(config, f_in), pool=False)


def walk_toy(t: plans.Visitor, m: ModelConfig, image_size: int) -> None:
    f_in = m.in_channels * image_size * image_size
    t.saves(1, f_in)
    for i in range(m.depth):
        width = m.width if i % 2 == 0 else m.width // 2
        t.linear(f_in, width)
        t.unit(width)
        f_in = width
    t.linear(f_in, m.num_classes)


@pytest.fixture
def toy_family():
    catalog.register_family(catalog.ArchInfo(
        TOY, "Toy", "Toy net (choose the size)", build_toy, walk_toy, default_depth=3, default_width=8,
        depth_help="hidden layers", width_help="units of the wide layers", spatial=False,
        norms=("batchnorm", "layernorm", "none")))
    try:
        yield TOY
    finally:
        catalog.unregister_family(TOY)


def test_a_registered_family_takes_its_defaults_and_its_normalizers_from_its_row(toy_family):
    config = ModelConfig(arch=toy_family, norm="layernorm")
    assert (config.depth, config.width, config.stages) == (3, 8, None)
    with pytest.raises(ValueError, match=r"'groupnorm' does not apply to arch 'toyfamily'; allowed: "
                                         r"'batchnorm', 'layernorm', 'none'"):
        ModelConfig(arch=toy_family, norm="groupnorm")
    with pytest.raises(ValueError, match=r"stages applies to arch 'resnet' only"):
        ModelConfig(arch=toy_family, norm="none", stages=2)


def test_an_unknown_family_is_refused_naming_the_known_ones(toy_family):
    with pytest.raises(ValueError, match=r"Unknown architecture \(arch\) 'nope'; expected one of "
                                         r"'mlp', 'cnn', 'resnet', 'transformer', 'toyfamily'"):
        ModelConfig(arch="nope")
    with pytest.raises(ValueError, match="Unknown architecture"):
        catalog.family("nope")


def test_the_probe_measures_every_layer_the_builder_made(toy_family):
    frame = run_probes(ModelConfig(arch=toy_family, norm="batchnorm", depth=4, width=8),
                       ProbeConfig(batch_size=4, image_size=4, seeds=1))
    acts = frame[(frame["kind"] == "act") & (frame["metric"] == "act_var")]
    assert len(acts) == 4 and frame["value"].notna().all()
    assert set(frame["arch"]) == {toy_family}


def test_the_budget_walks_the_family_plan(toy_family):
    model = ModelConfig(arch=toy_family, norm="none", depth=4, width=8)
    probe = ProbeConfig(batch_size=4, image_size=4)
    # forward FLOPs of the toy's linears: 48->8, 8->4, 4->8, 8->4, head 4->10, two per multiply-add
    layers = [(48, 8), (8, 4), (4, 8), (8, 4), (4, 10)]
    assert estimate_cost(model, probe).forward_flops == sum(2 * 4 * a * b for a, b in layers)
    assert catalog.final_features(model, 4) == 4
    deep = ModelConfig(arch=toy_family, norm="none", depth=40, width=8)
    with pytest.raises(BudgetExceeded, match="depth 40 exceeds NORMLAB_MAX_DEPTH=8"):
        check_budget(deep, probe, local_limits({"NORMLAB_MAX_DEPTH": "8"}))


def test_the_command_line_probes_the_family(toy_family, capsys):
    assert main(["probe", "--arch", toy_family, "--norm", "layernorm", "--batch-size", "4",
                 "--image-size", "4", "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert f"{toy_family}, layernorm, depth 3, width 8" in out
    assert main(["probe", "--arch", toy_family, "--norm", "frn"]) == 2
    assert "does not apply to arch 'toyfamily'" in capsys.readouterr().err


@pytest.mark.parametrize("page", registered_pages())
def test_every_page_opens_on_the_family_from_a_link(toy_family, page):
    at = open_app(page, net=toy_family, norms="batchnorm,layernorm", depth="2", width="8", batch="4",
                  image="8")
    assert not at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
