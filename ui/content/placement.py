"""The Placement page's runs: which transformers it probes, at what size, for which panel.

Plain configs, so the page, the warm-up (``python -m ui.warm``) and the tests read one definition. The
sizes are the small ones the laws already show at (width 64, 32 tokens, batch 8): every run of the first
view probes in well under a second on a 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Iterable

from normlab import ModelConfig, ProbeConfig
from normlab.core import catalog
from normlab.core.config import PLACEMENTS

NET = {"arch": "transformer", "width": 64, "heads": 4, "seq_len": 32}
PROBE = ProbeConfig(input="tokens", batch_size=8, seeds=1)  # one seed: the 17 runs draw in seconds
DEPTH = 12  # the per-block panels: deep enough for post-LN's tokens to align
DEPTHS = (6, 12, 24)  # the depth sweep of the last block's gradient (log-log slope)
COLLAPSE_DEPTH = 8  # Dong et al.'s pure attention: it collapses within three blocks, skips keep ~0.4
COLLAPSE_NORM = "none"  # Dong's pure attention has no normalizer: self-attention layers alone
NORMS = tuple(catalog.allowed_norms("transformer"))  # what the page's normalizer menu offers
DEFAULT_PLACEMENTS = PLACEMENTS
DEFAULT_NORMS = ("layernorm",)


def models(placements: Iterable[str], norms: Iterable[str], depth: int = DEPTH) -> list[ModelConfig]:
    """One transformer per (placement, normalizer), in that order: the per-block panels."""
    return [ModelConfig(**NET, depth=depth, placement=p, norm=n) for n in norms for p in placements]


def depth_sweep(placements: Iterable[str], norms: Iterable[str],
                depths: Iterable[int] = DEPTHS) -> list[ModelConfig]:
    """Every (placement, normalizer) at every depth: the last block's gradient against L."""
    placements, norms = tuple(placements), tuple(norms)
    return [m for depth in depths for m in models(placements, norms, depth)]


def collapse_models(depth: int = COLLAPSE_DEPTH) -> list[ModelConfig]:
    """Attention-only blocks (no FFN) without and with skip connections (Dong et al. 2021), bidirectional
    as in their self-attention networks (a causal mask keeps the first tokens apart, and the collapse is
    then only exponential: about ×0.6 per block at these sizes)."""
    return [ModelConfig(**NET, depth=depth, norm=COLLAPSE_NORM, ffn=False, skip=skip, causal=False)
            for skip in (False, True)]


def runs(placements: Iterable[str] = DEFAULT_PLACEMENTS,
         norms: Iterable[str] = DEFAULT_NORMS) -> list[tuple[ModelConfig, ProbeConfig]]:
    """Every (network, probe) of the page's view, without repeats (the depth-12 runs serve two panels)."""
    placements, norms = tuple(placements), tuple(norms)
    out: list[tuple[ModelConfig, ProbeConfig]] = []
    for model in (*models(placements, norms), *depth_sweep(placements, norms), *collapse_models()):
        if (model, PROBE) not in out:
            out.append((model, PROBE))
    return out
