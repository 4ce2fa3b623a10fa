"""The transformer's probes (spec section 5): the same tidy frame, its layer names and kinds, each metric
against a direct computation on the same network and batch, and the collapse of pure attention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normlab import ModelConfig, ProbeConfig, run_probes
from normlab.core import catalog
from normlab.science.data import derive_seed, make_tokens
from normlab.science.metrics import all_metrics
from normlab.science.models import build_model
from normlab.science.probes import FRAME_COLUMNS, KINDS
from normlab.science.transformer import next_token_loss

SMALL = dict(arch="transformer", depth=2, width=16, heads=2, seq_len=8)
PROBE = ProbeConfig(batch_size=4)


def _frame(**kw):
    return run_probes(ModelConfig(**{**SMALL, **kw}), PROBE)


def _value(frame, layer, metric, kind=None):
    rows = frame[(frame.layer == layer) & (frame.metric == metric)]
    if kind is not None:
        rows = rows[rows.kind == kind]
    assert len(rows) == 1, (layer, metric, kind, len(rows))
    return float(rows.value.iloc[0])


def test_the_frame_names_blocks_sublayers_linear_maps_and_the_head_as_the_contract_says():
    frame = _frame()
    assert list(frame.columns) == list(FRAME_COLUMNS) and set(frame.kind) <= set(KINDS)
    assert set(frame.input) == {"tokens"} and set(frame.placement) == {"pre"}
    blocks = frame[frame.kind == "block"]
    assert blocks.layer.unique().tolist() == ["blocks.0", "blocks.1"]
    assert blocks["index"].unique().tolist() == [0, 1]
    sublayers = {f"blocks.{b}.{s}" for b in (0, 1) for s in ("attn", "ffn")}
    assert set(frame[frame.kind == "sublayer"].layer) == sublayers
    linear = {f"blocks.{b}.attn.{m}" for b in (0, 1) for m in "qkvo"} | {
        f"blocks.{b}.ffn.{m}" for b in (0, 1) for m in ("w1", "w2")}
    assert set(frame[frame.metric == "weight_grad_norm"].layer) == linear
    assert set(frame[frame.metric == "grad_norm"].layer) == linear | {"head"}
    assert set(frame[frame.metric == "attn_entropy"].layer) == {"blocks.0.attn", "blocks.1.attn"}
    for kind in ("block", "sublayer"):
        metrics = set(frame[frame.kind == kind].metric)
        assert metrics == set(catalog.ACTIVATION_METRICS) | set(catalog.TOKEN_METRICS)
    assert frame.value.notna().all() and not frame.overflow.any()
    assert "saturated_frac" not in set(frame.metric)  # layernorm saturates nothing
    final = frame[frame.final & (frame.kind != "spectrum")]
    assert set(final.layer) == {"final_norm"}
    assert (frame.kind == "spectrum").sum() == PROBE.batch_size


def test_post_ln_has_no_final_norm_its_last_block_is_the_final_representation():
    frame = _frame(placement="post")
    assert set(frame[frame.final & (frame.kind != "spectrum")].layer) == {"blocks.1"}


def test_every_new_metric_has_a_catalog_row_with_title_help_and_the_kinds_it_is_read_at():
    frame = pd_concat([_frame(norm="dyt"), _frame(norm="derf", qk_norm=True)])
    for metric, kinds in frame.groupby("metric").kind.apply(set).items():
        info = catalog.METRIC_INFO[metric]
        assert info.title and info.help and kinds <= set(info.kinds) | {"spectrum"}, metric


def pd_concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _replay(cfg: ModelConfig, seed: int = 0):
    """The probe's first seed by hand: the same init and batch, outputs and gradients recorded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = build_model(cfg)
    model.train()
    tokens, targets = make_tokens(PROBE, seed, cfg.seq_len)
    seen = {}

    def keep(name):
        def hook(module, args, output):  # returns None: the output itself flows on
            seen.setdefault(name, output.detach())
        return hook

    hooks = [module.register_forward_hook(keep(name)) for name, module in model.named_modules() if name]
    loss = next_token_loss(model(tokens), targets)
    for h in hooks:
        h.remove()
    params = dict(model.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    return model, seen, grads


def test_each_metric_equals_its_definition_on_the_same_network_and_batch():
    cfg = ModelConfig(**{**SMALL, "norm": "dyt"})
    frame = run_probes(cfg, PROBE)
    model, seen, grads = _replay(cfg)
    x = seen["blocks.1"].double()  # (N, T, D)
    n, t, d = x.shape
    # act_var and act_sq_mean per feature over (N, T); act_sq_norm = E[x^2] over everything
    flat = x.reshape(n * t, d)
    var, mean = flat.var(0, unbiased=False).mean().item(), flat.mean(0).square().mean().item()
    assert _value(frame, "blocks.1", "act_var", "block") == pytest.approx(var)
    assert _value(frame, "blocks.1", "act_sq_mean", "block") == pytest.approx(mean)
    assert _value(frame, "blocks.1", "act_sq_norm", "block") == pytest.approx(x.square().mean().item())
    # sample-level metrics on the N sequence vectors (mean over tokens)
    direct = all_metrics(x.mean(1))
    for metric in ("cos_sim", "stable_rank", "effective_rank"):
        assert _value(frame, "blocks.1", metric, "block") == pytest.approx(direct[metric], rel=1e-6)
    # token metrics, sequence by sequence
    cos = [np.mean([torch.cosine_similarity(s[i], s[j], dim=0).item() for i in range(t) for j in range(t)
                    if i != j]) for s in x]
    assert _value(frame, "blocks.1", "token_cos_sim", "block") == pytest.approx(np.mean(cos), rel=1e-6)
    res = [(torch.linalg.norm(s - s.mean(0)) / torch.linalg.norm(s)).item() for s in x]
    assert _value(frame, "blocks.1", "token_residual", "block") == pytest.approx(np.mean(res), rel=1e-6)
    # weight gradients, and the attention's entropy from its probabilities
    for name in ("blocks.0.attn.q", "blocks.1.ffn.w2"):
        expected = torch.linalg.norm(grads[f"{name}.weight"].double()).item()
        assert _value(frame, name, "weight_grad_norm") == pytest.approx(expected, rel=1e-5)
    probs = seen["blocks.0.attn.probs"].double()
    entropy = -(probs * torch.log(probs.clamp_min(1e-300))).sum(-1).mean().item()
    assert _value(frame, "blocks.0.attn", "attn_entropy") == pytest.approx(entropy, rel=1e-6)
    # saturation: the share of |alpha x| > 2 at the first norm
    arg = model.blocks[0].norm1.alpha.detach() * model.embed.weight.detach()[make_tokens(PROBE, 0, 8)[0]]
    expected = (arg.abs() > 2).double().mean().item()
    assert _value(frame, "blocks.0.norm1", "saturated_frac") == pytest.approx(expected)


def test_causal_attention_has_lower_entropy_than_bidirectional_at_init():
    # a token attends to at most its own prefix: at most log(i) nats, under log(T) bidirectionally
    causal = _value(_frame(), "blocks.0.attn", "attn_entropy")
    both = _value(_frame(causal=False), "blocks.0.attn", "attn_entropy")
    assert causal < both <= math.log(SMALL["seq_len"])


def test_dyt_saturates_more_when_its_inputs_grow():
    # at init the residual stream of pre-LN grows with depth: its norms see larger inputs downstream
    small = _value(_frame(norm="dyt", residual_scale=0.1), "final_norm", "saturated_frac", "norm")
    large = _value(_frame(norm="dyt", residual_scale=10.0), "final_norm", "saturated_frac", "norm")
    assert 0 <= small < large <= 1


def test_pure_attention_collapses_to_rank_one_doubly_exponentially_and_skips_stop_it():
    """Dong et al. 2021: without skips and FFNs, bidirectional attention reaches rank one within a few
    blocks (token_residual falls by orders of magnitude); with skips it stays of order one."""
    kw = dict(arch="transformer", depth=6, width=32, heads=4, seq_len=16, norm="none", ffn=False,
              causal=False)
    pure = run_probes(ModelConfig(**kw, skip=False), PROBE)
    skip = run_probes(ModelConfig(**kw), PROBE)
    res = lambda f: f[(f.kind == "block") & (f.metric == "token_residual")].value.to_numpy()  # noqa: E731
    assert res(pure)[0] > 0.5 and res(pure)[3] < 1e-4 * res(pure)[0]
    assert (res(skip) > 0.3).all()


def test_a_blow_up_is_flagged_as_overflow_not_raised():
    frame = _frame(norm="none", residual_scale=1e30)
    assert frame.overflow.any()
    assert not frame.loc[~frame.overflow, "value"].isna().any()


def test_images_are_refused_for_the_transformer_and_tokens_for_the_others_by_name():
    with pytest.raises(ValueError, match=r"input 'gaussian' does not apply to arch 'transformer'"):
        run_probes(ModelConfig(**SMALL), ProbeConfig(input="gaussian", batch_size=4))
    with pytest.raises(ValueError, match=r"input 'tokens' does not apply to arch 'mlp'"):
        run_probes(ModelConfig(arch="mlp", depth=1, width=4), ProbeConfig(input="tokens", batch_size=4))


def test_the_text_input_probes_the_same_network_on_other_bytes():
    text = run_probes(ModelConfig(**SMALL), ProbeConfig(input="text", batch_size=4))
    rand = _frame()
    assert set(text.input) == {"text"} and text.value.notna().all() and not text.overflow.any()
    assert len(text) == len(rand) and (text.layer.to_numpy() == rand.layer.to_numpy()).all()
    assert not np.allclose(text.value.to_numpy(), rand.value.to_numpy())
