"""The transformer family of spec section 5: each placement block by block against a hand-written
forward, the causal mask, the options and their refusals, the catalog row."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from normlab import ModelConfig
from normlab.cli import main
from normlab.core import catalog
from normlab.core.config import PLACEMENTS, TRANSFORMER_FIELDS
from normlab.science.models import build_model
from normlab.science.transformer import block_placements

N, T, D, H = 2, 4, 8, 2
EPS = 1e-5


def _tiny(**kw) -> ModelConfig:
    return ModelConfig(**{"arch": "transformer", "depth": 3, "width": D, "heads": H, "seq_len": T, **kw})


def _tokens(seed=0, n=N, t=T):
    return torch.randint(0, 256, (n, t), generator=torch.Generator().manual_seed(seed))


def _randomized(config: ModelConfig):
    """The model with every parameter drawn at random (norm gains, DyT's alpha, positions included)."""
    torch.manual_seed(1)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 and p.shape[0] == 1 else 0.0))
    return model


# --- The reference: a few lines of plain torch per piece, reading the model's parameters ---------------


def ref_norm(name, m, x):
    if name == "layernorm":
        return F.layer_norm(x, (x.shape[-1],), m.weight, m.bias, EPS)
    if name == "rmsnorm":
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * m.weight
    if name == "dyt":
        return m.weight * torch.tanh(m.alpha * x) + m.bias
    if name == "derf":
        return m.weight * torch.erf(m.alpha * x + m.shift) + m.bias
    return x


def ref_attention(a, x, cfg):
    n, t, d = x.shape
    heads = lambda z: z.reshape(n, t, cfg.heads, d // cfg.heads).permute(0, 2, 1, 3)  # noqa: E731
    q, k, v = (heads(x @ lin.weight.T + lin.bias) for lin in (a.q, a.k, a.v))
    if cfg.qk_norm:
        q, k = ref_norm(cfg.norm, a.q_norm, q), ref_norm(cfg.norm, a.k_norm, k)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // cfg.heads)
    if cfg.causal:
        later = torch.arange(t)[None, :] > torch.arange(t)[:, None]
        scores = scores.masked_fill(later, -math.inf)
    out = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(n, t, d)
    return out @ a.o.weight.T + a.o.bias


def ref_ffn(f, x):
    return F.gelu(x @ f.w1.weight.T + f.w1.bias) @ f.w2.weight.T + f.w2.bias


def ref_block(b, x, cfg, placement, position):
    """One block as spec section 5's table writes it; ``position`` l counts from 1."""
    a = cfg.residual_scale
    skip = (lambda x, y: x + y) if cfg.skip else (lambda x, y: y)
    subs = [(lambda h: ref_attention(b.attn, h, cfg), b.norm1, b.norm1_out)]
    if cfg.ffn:
        subs.append((lambda h: ref_ffn(b.ffn, h), b.norm2, b.norm2_out))
    for f, norm, out_norm in subs:
        nm = lambda m, h: ref_norm(cfg.norm, m, h)  # noqa: E731
        if placement == "post":
            x = nm(norm, skip(x, a * f(x)))
        elif placement == "pre":
            x = skip(x, a * f(nm(norm, x)))
        elif placement == "peri":
            x = skip(x, a * nm(out_norm, f(nm(norm, x))))
        elif placement == "lns":
            x = skip(x, a * f(nm(norm, x) / math.sqrt(position)))
    return x


def _block_outputs(model, tokens):
    outs = []
    hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o.detach())) for b in model.blocks]
    logits = model(tokens)
    for h in hooks:
        h.remove()
    return outs, logits


CASES = [dict(placement=p, norm=n) for p in PLACEMENTS for n in ("layernorm", "rmsnorm", "dyt", "derf")] + [
    dict(placement="pre", norm="none"),
    dict(placement="post", causal=False),
    dict(placement="pre", qk_norm=True, norm="rmsnorm"),
    dict(placement="peri", qk_norm=True, norm="dyt"),
    dict(placement="pre", residual_scale=1 / math.sqrt(3)),
    dict(placement="post", ffn=False, skip=False, norm="none"),
    dict(placement="pre", ffn=False),
    dict(placement="lns", skip=False),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_each_placement_matches_the_hand_written_forward_block_by_block(kw):
    cfg = _tiny(**kw)
    model = _randomized(cfg)
    tokens = _tokens()
    outs, logits = _block_outputs(model, tokens)
    with torch.no_grad():
        x = model.embed.weight[tokens] + model.pos[:T]
        for i, (block, placement) in enumerate(zip(model.blocks, block_placements(cfg), strict=True), 1):
            x = ref_block(block, x, cfg, placement, i)
            torch.testing.assert_close(outs[i - 1], x, atol=1e-5, rtol=1e-5, msg=f"block {i - 1}")
        if cfg.placement != "post":
            x = ref_norm(cfg.norm, model.final_norm, x)
        torch.testing.assert_close(logits, x @ model.head.weight.T + model.head.bias, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("depth", "posts"), [(1, 1), (4, 1), (5, 2), (8, 2), (9, 3)])
def test_mix_ln_is_post_for_the_first_quarter_of_the_blocks_rounded_up_and_pre_after(depth, posts):
    places = block_placements(_tiny(placement="mix", depth=depth))
    assert places == ["post"] * posts + ["pre"] * (depth - posts)


def test_only_post_ln_goes_without_a_final_norm():
    assert build_model(_tiny(placement="post")).final_norm is None
    for placement in ("pre", "peri", "mix", "lns"):
        assert build_model(_tiny(placement=placement)).final_norm is not None


def test_causal_attention_sees_no_later_token_and_bidirectional_does():
    tokens = _tokens()
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 256
    for causal in (True, False):
        model = build_model(_tiny(causal=causal))
        with torch.no_grad():
            before, after = model(tokens), model(changed)
        same_prefix = torch.allclose(before[:, :-1], after[:, :-1])
        assert same_prefix == causal


def test_init_is_xavier_normal_with_zero_biases_embeddings_n01_and_positions_zero():
    torch.manual_seed(0)
    model = build_model(_tiny(width=64, heads=4, seq_len=8, depth=2))
    w1 = model.blocks[0].ffn.w1.weight
    assert w1.std().item() == pytest.approx(math.sqrt(2 / (64 + 256)), rel=0.05)
    assert model.blocks[1].attn.q.weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)
    assert all(float(m.bias.abs().max()) == 0 for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert model.embed.weight.std().item() == pytest.approx(1.0, rel=0.05)
    assert float(model.pos.abs().max()) == 0
    assert model.head.out_features == 256


def test_the_ablations_drop_the_ffn_and_the_skips():
    model = build_model(_tiny(ffn=False, skip=False, norm="none"))
    assert all(b.ffn is None and b.norm2 is None for b in model.blocks)
    assert not any(name.endswith(".ffn") for name, _, _ in model.probe_points())


# --- The config: defaults, refusals by name ------------------------------------------------------------


def test_the_family_takes_its_defaults_from_its_catalog_row():
    cfg = ModelConfig(arch="transformer")
    assert (cfg.depth, cfg.width, cfg.norm, cfg.num_classes) == (6, 64, "layernorm", 256)
    assert (cfg.placement, cfg.heads, cfg.seq_len, cfg.causal) == ("pre", 4, 32, True)
    assert (cfg.residual_scale, cfg.qk_norm, cfg.ffn, cfg.skip) == (1.0, False, True, True)
    assert ModelConfig().norm == ModelConfig(arch="mlp").norm == "batchnorm"
    assert catalog.allowed_norms("transformer") == ("layernorm", "rmsnorm", "dyt", "derf", "none")
    assert catalog.family("transformer").trainable is False


@pytest.mark.parametrize(("kw", "message"), [
    (dict(heads=3), r"heads \(3\) must divide the width \(8\); allowed: 1, 2, 4, 8"),
    (dict(norm="batchnorm"), r"'batchnorm' does not apply to arch 'transformer'; allowed: 'layernorm', "
                             r"'rmsnorm', 'dyt', 'derf', 'none'"),
    (dict(norm="none", qk_norm=True), r"qk_norm .* got norm 'none'"),
    (dict(placement="middle"), r"placement .*'post', 'pre', 'peri', 'mix', 'lns'"),
    (dict(seq_len=1), r"seq_len must be"),
    (dict(residual_scale=0.0), r"residual_scale must be in \(0.0, inf\)"),
    (dict(residual_scale=float("nan")), r"residual_scale must be a finite number"),
    (dict(causal="yes"), r"causal must be true or false"),
    (dict(num_classes=10), r"num_classes of arch 'transformer' is its vocabulary, 256"),
])
def test_bad_transformer_settings_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**kw)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize(("field", "value"), [("placement", "post"), ("heads", 2), ("seq_len", 8),
                                              ("causal", False), ("residual_scale", 0.5),
                                              ("qk_norm", True), ("ffn", False), ("skip", False)])
def test_the_transformer_options_are_refused_on_the_other_families_by_name(arch, field, value):
    assert field in TRANSFORMER_FIELDS
    with pytest.raises(ValueError, match=rf"{field} applies to arch 'transformer' only; got {field}="):
        ModelConfig(arch=arch, **{field: value})


def test_a_preset_refuses_the_transformer_options_too():
    with pytest.raises(ValueError, match="heads applies to arch 'transformer' only"):
        ModelConfig(preset="resnet56", heads=2)


def test_training_a_transformer_is_refused_naming_the_catalog_field(capsys):
    assert main(["train", "--arch", "transformer", "--steps", "1"]) == 2
    assert "trainable=False" in capsys.readouterr().err


def test_a_sweep_across_families_takes_each_familys_defaults_and_keeps_what_was_given():
    from normlab.science.probes import vary

    to_tf = vary(ModelConfig(depth=1, width=8), {"arch": "transformer"})
    assert (to_tf.norm, to_tf.num_classes, to_tf.depth, to_tf.width) == ("layernorm", 256, 1, 8)
    back = vary(to_tf, {"arch": "resnet"})
    assert (back.norm, back.num_classes, back.stages) == ("batchnorm", 10, 1)
    assert vary(ModelConfig(arch="mlp", norm="dyt"), {"arch": "transformer"}).norm == "dyt"
    with pytest.raises(ValueError, match="placement applies to arch 'transformer' only"):
        vary(_tiny(placement="post"), {"arch": "mlp"})
