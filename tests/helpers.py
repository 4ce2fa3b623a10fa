"""What the test files share: synthetic probe frames, decoded dashboard charts, the app under AppTest and
a tiny study. Fixtures live in conftest.py; plain helpers here, imported as ``from helpers import ...``."""

from __future__ import annotations

import argparse
import base64
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from streamlit.testing.v1 import AppTest

from normlab import ModelConfig, ProbeConfig
from normlab.cli.train import add_parsers as add_train_parsers
from normlab.science.probes import FRAME_COLUMNS

SIMILARITY = ("act_var", "act_sq_mean", "cos_sim", "cos_sim_centered", "stable_rank", "effective_rank",
              "numerical_rank")

def contract_frame(model: ModelConfig | None = None, probe: ProbeConfig | None = None, *,
                   var=lambda b: 0.7 + 0.35 * (b - 1), grad=lambda k: 1.25 ** k, res_var=lambda b: 1.0,
                   cos=lambda b: 0.2 + 0.05 * b, rank=lambda b: 6.0 - 0.4 * b, bad=()) -> pd.DataFrame:
    """A frame shaped exactly like ``run_probes``' output for a one-stage resnet, with chosen values.

    ``var(b)`` is act_var at block b (1-based); ``grad(k)`` the gradient norm k layers below the classifier;
    ``cos(b)`` and ``rank(b)`` the cosine similarity and stable rank; ``bad`` holds (metric, block) pairs
    whose value overflows to inf.
    """
    model = model or ModelConfig(arch="resnet", norm="batchnorm", depth=5, width=8)
    probe = probe or ProbeConfig(batch_size=8, image_size=8, seeds=2)
    configs = {**model.to_dict(), **{k: v for k, v in probe.to_dict().items() if k not in ("seed", "seeds")}}
    blocks = model.depth * model.stages
    final = f"features.{blocks}"
    rows = []
    for seed in probe.seed_list:
        wobble = 1 + 0.04 * (seed - probe.seed)  # seeds differ a little, so bands have a width

        def add(layer, index, kind, metric, value, is_final=False, seed=seed):
            rows.append({"seed": seed, "layer": layer, "index": index, "kind": kind, "metric": metric,
                         "value": float(value), "final": is_final, "overflow": not math.isfinite(value),
                         **configs})

        convs = ["features.0.conv"]
        for b in range(1, blocks + 1):
            name = f"features.{b}"
            values = {"act_var": var(b) * wobble, "act_sq_mean": 0.2 * var(b), "cos_sim": cos(b),
                      "cos_sim_centered": 0.02 * b, "stable_rank": rank(b),
                      "effective_rank": 6.5 - 0.3 * b, "numerical_rank": 7.0}
            for metric in SIMILARITY:
                value = math.inf if (metric, b) in bad else values[metric]
                add(name, b - 1, "block", metric, value, is_final=name == final)
            add(f"{name}.scale", b - 1, "res", "res_var", res_var(b) * wobble)
            convs += [f"{name}.conv1", f"{name}.conv2"]
        convs.append("head")
        for i, layer in enumerate(convs):
            add(layer, i, "conv", "grad_norm", grad(len(convs) - 1 - i) * wobble)
        for k in range(probe.batch_size):
            add(final, k, "spectrum", "gram_eigenvalue", 4.0 / (k + 1) * wobble, is_final=True)
    frame = pd.DataFrame(rows)
    assert tuple(frame.columns) == FRAME_COLUMNS, "the synthetic frame must follow the probe contract"
    return frame


def _typed_array(obj: dict):
    """Plotly sends numeric arrays as base64 typed arrays ({"dtype", "bdata"[, "shape"]}): decode them."""
    if set(obj) >= {"dtype", "bdata"}:
        values = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"])
        if "shape" in obj:
            values = values.reshape([int(n) for n in str(obj["shape"]).split(",")])
        return values.tolist()
    return obj


def charts(at: AppTest) -> list[go.Figure]:
    """The plotly figures the run sent to the browser, decoded."""
    return [go.Figure(json.loads(el.proto.spec, object_hook=_typed_array)) for el in at.get("plotly_chart")]


# --- The dashboard under AppTest ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
TIMEOUT = 300  # seconds per run: a fresh claims page probes a few dozen small networks


def registered_pages() -> list[str]:
    """The page files app.py puts in its navigation (the page table, ui.state.nav)."""
    from ui.state.nav import PAGES

    return [page.path for page in PAGES]


def open_app(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(params)
    if page == "pages/training.py":
        at.session_state["training_study"] = tiny_study()  # seconds, not the page's ten-network study
    if page == "pages/placement.py":
        at.session_state["pl_placements"] = ["post", "pre"]  # 8 transformers, not the page's 17
    if page == "pages/dynamics.py":
        at.session_state["dynamics_norms"] = ["batchnorm", "none"]  # two runs, not the page's eight
        at.session_state["dynamics_seeds"] = 1
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def tiny_study():
    """A two-run study, so a test trains in seconds."""
    from normlab.core.train_config import StudyConfig, TrainConfig

    return StudyConfig(archs=("cnn",), norms=("batchnorm", "layernorm"), groups=(4,), seeds=1, width=8,
                       cnn_depth=2, train=TrainConfig(steps=20, image_size=8, batch_size=16, probe_after=5,
                                                      eval_every=10), k_steps=10, n_boot=50)


def transformer_frame(model: ModelConfig | None = None, probe: ProbeConfig | None = None, *,
                      var=lambda b: 1.0 + 0.5 * b, cos=lambda b: 0.1 + 0.02 * b, resid=lambda b: 0.9,
                      w2=lambda b, depth: 1.0, sat=0.0, sq=None) -> pd.DataFrame:
    """A frame shaped like ``run_probes``' output for a transformer, with chosen values per block b (1-based).

    ``var``, ``cos`` and ``resid`` give act_var, token_cos_sim and token_residual at the block outputs
    (``sq`` act_sq_norm, E‖x‖²/D; default: ``var``),
    ``w2(b, depth)`` the ‖∂L/∂W₂‖ of block b, ``sat`` the saturated fraction at each norm (DyT and Derf).
    """
    model = model or ModelConfig(arch="transformer", depth=4, width=16, heads=2, seq_len=8)
    probe = probe or ProbeConfig(input="tokens", batch_size=4, seeds=2)
    configs = {**model.to_dict(), **{k: v for k, v in probe.to_dict().items() if k not in ("seed", "seeds")}}
    rows = []
    for seed in probe.seed_list:
        wobble = 1 + 0.02 * (seed - probe.seed)

        def add(layer, index, kind, metric, value, seed=seed):
            rows.append({"seed": seed, "layer": layer, "index": index, "kind": kind, "metric": metric,
                         "value": float(value), "final": False, "overflow": not math.isfinite(value),
                         **configs})

        for b in range(1, model.depth + 1):
            name = f"blocks.{b - 1}"
            add(name, b - 1, "block", "act_var", var(b) * wobble)
            add(name, b - 1, "block", "act_sq_norm", (sq or var)(b) * wobble)
            add(name, b - 1, "block", "token_cos_sim", cos(b))
            add(name, b - 1, "block", "token_residual", resid(b) * wobble)
            if model.ffn:
                add(f"{name}.ffn.w2", b - 1, "conv", "weight_grad_norm", w2(b, model.depth) * wobble)
            if model.norm in ("dyt", "derf"):
                add(f"{name}.norm1", b - 1, "norm", "saturated_frac", sat)
    frame = pd.DataFrame(rows)
    return frame[[c for c in FRAME_COLUMNS if c in frame] + [c for c in frame if c not in FRAME_COLUMNS]]


def train_parser() -> argparse.ArgumentParser:
    """The ``normlab`` parser with the training subcommands (train, study, warmup) alone."""
    root = argparse.ArgumentParser(prog="normlab")
    add_train_parsers(root.add_subparsers(dest="command", required=True))
    return root


def run_train_cli(argv, capsys) -> tuple[int, str, str]:
    """Run a training subcommand in this process: its exit code, stdout and stderr."""
    args = train_parser().parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err
