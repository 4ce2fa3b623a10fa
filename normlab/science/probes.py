"""The measurement: the paper's three properties in one forward and one backward pass, as a tidy frame.

For each seed: a freshly initialized network (train mode), one seeded input batch, cross-entropy
against random labels, backward. Activation statistics are reduced to O(N^2) numbers on the device
inside the forward hooks; after the last seed they cross to the host in one transfer, and every
metric of every seed comes from one batched float64 pass with one eigensolve. Values that overflow
stay inf/NaN in the frame with ``overflow`` set; nothing here raises on bad numerics.
Unguarded: no budget, backend or store (normlab.ops.run adds them); never prints.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from normlab.core import catalog
from normlab.core.catalog import SUMMARY_STATS
from normlab.core.config import (
    DEFAULT_CLASSES,
    DEFAULT_GROUPS,
    MAX_SEED,
    MAX_SWEEP_POINTS,
    PRESETS,
    VOCAB,
    ModelConfig,
    ProbeConfig,
    Progress,
    check_callback,
    check_instance,
    check_int,
    check_items,
    describe,
    resolve_input,
)
from normlab.core.deadline import ComputeTimeout, check_time
from normlab.science.data import derive_seed, make_inputs, make_labels, make_tokens
from normlab.science.device import resolve_device
from normlab.science.hooks import Tap, Taps, record
from normlab.science.metrics import (
    ACTIVATION_METRICS,
    DEFAULT_RANK_TOL,
    GramStats,
    Workspace,
    channel_stats,
    frobenius_norm,
    gram_stats,
    metrics_from_stats,
    normalized_gram,
    stack_stats,
)
from normlab.science.models import ACT, ATTN, BLOCK, CONV, NORM, RES, SUBLAYER, build_model
from normlab.science.norms import SATURATION, EvoNormB0, EvoNormS0, FilterResponseNorm

SPECTRUM = "spectrum"  # the kind of the Gram-eigenvalue rows
KINDS = (ACT, BLOCK, RES, CONV, SUBLAYER, ATTN, NORM, SPECTRUM)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
# seed and seeds describe the run, not a row: each row carries its own seed.
PROBE_FIELDS = tuple(f.name for f in dataclasses.fields(ProbeConfig) if f.name not in ("seed", "seeds"))
ROW_COLUMNS = ("seed", "layer", "index", "kind", "metric", "value", "final", "overflow")
FRAME_COLUMNS = ROW_COLUMNS + MODEL_FIELDS + PROBE_FIELDS
KEY_COLUMNS = ("layer", "index", "kind", "metric")
SWEEP_FIELDS = tuple(sorted(MODEL_FIELDS + tuple(f.name for f in dataclasses.fields(ProbeConfig))))

# Seeds share one eigensolve and one host transfer while their Gram matrices (N^2 float64 per point)
# stay below this; many seeds of a big network go in groups. The metrics of a group briefly need
# about four times this (the stacks, their concatenation, the eigensolver's input), so it is kept
# small: the dashboard's net fits ~100 seeds, resnet56 at batch 128 three.
GROUP_BYTES = 16 * 2**20

# Norm-slot layers that probe_module taps by default (besides every conv/linear for grad_norm).
NORM_LAYERS = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
               *([nn.RMSNorm] if hasattr(nn, "RMSNorm") else []),  # torch >= 2.4
               FilterResponseNorm, EvoNormB0, EvoNormS0)


# ---------------------------------------------------------------------------------------------
# One pass: hooks -> reductions -> rows


@dataclasses.dataclass
class _ChannelStats:
    """The reduction of a residual-branch output: res_var needs only channel statistics."""

    act_var: torch.Tensor  # ()
    finite: torch.Tensor  # () bool


@dataclasses.dataclass
class _Scalars:
    """Metrics that are one number each, kept as they are: (S,) float64 values and their finiteness."""

    names: tuple[str, ...]
    values: torch.Tensor  # (S,) float64
    finite: torch.Tensor  # (S,) bool

    @classmethod
    def of(cls, **values: torch.Tensor) -> _Scalars:
        stacked = torch.stack([v.to(torch.float64).reshape(()) for v in values.values()])
        return cls(tuple(values), stacked, torch.isfinite(stacked))


@dataclasses.dataclass
class _TokenStats:
    """A transformer's token point (N, T, D): the Gram statistics of its N sequence vectors (with the
    channel statistics per feature over (N, T)) and the token metrics."""

    gram: GramStats
    tokens: _Scalars


def token_scalars(x: torch.Tensor) -> _Scalars:
    """act_sq_norm, token_cos_sim and token_residual of token sequences x (N, T, D), in float64.

    A zero token has cosine 0 with every other token; a zero sequence has token_residual 0.
    """
    with torch.no_grad():
        x64 = x.detach().to(torch.float64)  # (N, T, D)
        t = x64.shape[1]
        tiny = torch.finfo(torch.float64).tiny
        unit = x64 / torch.linalg.vector_norm(x64, dim=-1, keepdim=True).clamp_min(tiny)  # (N, T, D)
        cos = unit @ unit.transpose(1, 2)  # (N, T, T)
        off = cos.sum((1, 2)) - torch.diagonal(cos, dim1=1, dim2=2).sum(-1)  # (N,)
        total = torch.linalg.vector_norm(x64, dim=(1, 2))  # (N,)
        spread = torch.linalg.vector_norm(x64 - x64.mean(1, keepdim=True), dim=(1, 2))  # (N,)
        residual = torch.where(total > 0, spread / total.clamp_min(tiny), 0.0)
        return _Scalars.of(act_sq_norm=x64.square().mean(), token_cos_sim=(off / (t * (t - 1))).mean(),
                           token_residual=residual.mean())


class _Reducer:
    """What the forward hooks keep of each output, by kind.

    A post-activation block outputs the very tensor its last activation made: that tensor is reduced
    once and the two taps share the statistics (the same object, measured once at the end).
    """

    def __init__(self, workspace: Workspace | None = None) -> None:
        self._last: tuple = (None, -1, None)
        self.workspace = Workspace() if workspace is None else workspace

    def __call__(self, output: torch.Tensor, kind: str):
        check_time()  # a computation past its hard wall-time limit stops here, between layers
        if kind == RES:
            var, _ = channel_stats(output, self.workspace)
            return _ChannelStats(var, torch.isfinite(var))  # any inf/NaN makes a variance NaN
        last, version, stats = self._last
        if output is last and output._version == version:
            return stats
        stats = gram_stats(output, self.workspace)
        self._last = (output, output._version, stats)
        return stats

    def clear(self) -> None:
        self._last = (None, -1, None)


class _TokenReducer(_Reducer):
    """A transformer's reductions: token points (N, T, D) as :class:`_TokenStats`, attention
    probabilities (N, H, T, T) to their mean row entropy, a DyT/Derf argument to its saturated fraction."""

    def __call__(self, output: torch.Tensor, kind: str):
        check_time()
        if kind == ATTN:
            with torch.no_grad():  # entr(0) = 0: the masked entries add nothing
                entropy = torch.special.entr(output.detach().to(torch.float64)).sum(-1).mean()
            return _Scalars.of(attn_entropy=entropy)
        if kind == NORM:
            with torch.no_grad():
                saturated = (output.detach().abs() > SATURATION).to(torch.float64).mean()
                # a non-finite argument makes the fraction meaningless: NaN, flagged as overflow
                saturated = torch.where(torch.isfinite(output).all(), saturated, torch.nan)
            return _Scalars.of(saturated_frac=saturated)
        last, version, stats = self._last
        if output is last and output._version == version:
            return stats
        n, t, d = output.shape
        gram = gram_stats(output.detach().mean(1), self.workspace)  # the N sequence vectors (N, D)
        var, sq_mean = channel_stats(output.detach().reshape(n * t, d), self.workspace)  # per feature
        gram = dataclasses.replace(gram, act_var=var, act_sq_mean=sq_mean)
        stats = _TokenStats(gram, token_scalars(output))
        self._last = (output, output._version, stats)
        return stats


def _measure(
    model: nn.Module,
    inputs: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    points: Iterable[tuple[str, str, nn.Module]],
    final: nn.Module | None,
    workspace: Workspace | None = None,
    reducer: _Reducer | None = None,
    weights: Sequence[tuple[str, nn.Parameter]] = (),
) -> Taps:
    """Forward, loss, backward under the hooks; the taps hold statistics on the device, nothing moved yet.

    ``weights``: (name, parameter) pairs whose ‖dL/dW‖_F is kept as a ``weight_grad_norm`` tap (kind
    conv, at the name of the layer's own grad_norm tap).
    """
    reducer = _Reducer(workspace) if reducer is None else reducer

    def grad_reduce(grad: torch.Tensor) -> torch.Tensor:
        check_time()  # and between layers of the backward pass
        return frobenius_norm(grad, reducer.workspace)

    with record(model, points, reduce=reducer, grad_reduce=grad_reduce, final=final) as taps:
        output = model(inputs)
        reducer.clear()  # the statistics are kept; the last activation need not be
        loss = loss_fn(output)
        if loss.requires_grad:
            # Gradients w.r.t. the input only: every conv/linear output on the way gets its hook
            # called, while no parameter's .grad is written.
            wrt = [inputs] if inputs.requires_grad else [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss, wrt, allow_unused=True)
            if weights:
                _weight_taps(taps, weights, dict(zip(map(id, wrt), grads, strict=True)))
    if taps.final is None:  # a module without a known final representation: its last activation
        last = [t for t in taps.taps if t.kind != CONV and t.kind != RES]
        if last:
            last[-1].final = True
    return taps


def _weight_taps(taps: Taps, weights: Sequence[tuple[str, nn.Parameter]],
                 grads: Mapping[int, torch.Tensor]) -> None:
    """A conv tap of ‖dL/dW‖_F per weight the backward pass reached, indexed as the layer's grad_norm."""
    index = {t.name: t.index for t in taps.taps if t.kind == CONV}
    for k, (name, weight) in enumerate(weights):
        grad = grads.get(id(weight))
        if grad is not None:
            norm = torch.linalg.vector_norm(grad.detach(), dtype=torch.float64)
            taps.taps.append(Tap(name, CONV, index.get(name, k), value=_Scalars.of(weight_grad_norm=norm)))


def to_host(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors on the CPU, moved in one device-to-host transfer (one synchronization).

    They are packed into one float64 buffer and unpacked with their shapes and dtypes (float64 holds
    every float32 and bool value exactly). CPU tensors are returned as they are.
    """
    if not tensors or all(t.device.type == "cpu" for t in tensors):
        return list(tensors)
    device = next(t.device for t in tensors if t.device.type != "cpu")
    flat = torch.cat([t.detach().to(device, torch.float64).reshape(-1) for t in tensors]).cpu()
    out, at = [], 0
    for t in tensors:
        out.append(flat[at:at + t.numel()].view(t.shape).to(t.dtype))
        at += t.numel()
    return out


@dataclasses.dataclass(frozen=True)
class _Row:
    """What a row says of its probe point; the tap itself, with its per-point tensors, is let go."""

    name: str
    kind: str
    index: int
    final: bool


@dataclasses.dataclass
class _Packed:
    """One pass with its statistics stacked: a few device tensors rather than several per point.

    Packing right after the pass lets the per-point tensors go, so seeds measured together hold
    no more than one stack each (many small tensors kept alive between passes also fragment the
    CPU heap that the next pass allocates its activations from).
    """

    seed: int
    rows: list[tuple[_Row, str, int]]  # (point, source, position in that source) in forward order
    final: int | None  # position of the final representation in ``grams``
    grams: GramStats | None  # (P, ...) the distinct activation statistics
    res: list[torch.Tensor]  # [act_var (R,), finite (R,)], or [] without residual points
    conv: list[torch.Tensor]  # [grad_norm (C,), finite (C,)], or [] without gradients
    scalars: list[torch.Tensor] = dataclasses.field(default_factory=list)  # [values (S,), finite (S,)]

    @property
    def gram_bytes(self) -> int:
        return 0 if self.grams is None else self.grams.gram_centered.numel() * 8


def _pack(taps: Taps, seed: int) -> _Packed:
    """Stack one pass's statistics; a post-activation block and its last activation share one entry."""
    rows: list[tuple[_Row, str, int]] = []
    position: dict[int, int] = {}  # id(GramStats) -> position in the stack
    grams: list[GramStats] = []
    res: list[_ChannelStats] = []
    conv: list[Tap] = []
    scalars: list[_Scalars] = []
    width = 0  # scalar values so far
    final = None
    for tap in taps.taps:
        row = _Row(tap.name, tap.kind, tap.index, tap.final)
        token = tap.value.tokens if isinstance(tap.value, _TokenStats) else None
        if token is not None:
            tap.value = tap.value.gram  # the Gram part is packed as any activation's
        if isinstance(tap.value, _Scalars):
            rows.append((row, "scalar", (width, tap.value.names)))
            scalars.append(tap.value)
            width += len(tap.value.names)
        elif isinstance(tap.value, GramStats):
            if id(tap.value) not in position:
                position[id(tap.value)] = len(grams)
                grams.append(tap.value)
            rows.append((row, "gram", position[id(tap.value)]))
            if tap.final:
                final = position[id(tap.value)]
            if token is not None:
                rows.append((row, "scalar", (width, token.names)))
                scalars.append(token)
                width += len(token.names)
        elif isinstance(tap.value, _ChannelStats):
            rows.append((row, "res", len(res)))
            res.append(tap.value)
        elif tap.kind == CONV and tap.grad_norm is not None:
            # a conv the backward pass never reached (its output does not depend on the input) has no row
            rows.append((row, "conv", len(conv)))
            conv.append(tap)
    return _Packed(
        seed, rows, final,
        stack_stats(grams) if grams else None,
        [torch.stack([r.act_var for r in res]), torch.stack([r.finite for r in res])] if res else [],
        [torch.stack([t.grad_norm for t in conv]), torch.stack([t.grad_finite for t in conv])]
        if conv else [],
        [torch.cat([v.values for v in scalars]), torch.cat([v.finite for v in scalars])] if scalars else [],
    )


def _rows(passes: Sequence[_Packed], rank_tol: float) -> dict[str, list]:
    """The row columns of several packed passes (one per seed, all of one batch size).

    Every activation point of every pass goes into one batched eigensolve, and every number the rows
    need crosses from the device to the host in one transfer.
    """
    gram_fields = [f.name for f in dataclasses.fields(GramStats)]
    grams = [p.grams for p in passes if p.grams is not None]
    res = [p.res for p in passes if p.res]
    conv = [p.conv for p in passes if p.conv]
    scalars = [p.scalars for p in passes if p.scalars]
    # Still on the device: O(P N^2) numbers, not activations.
    on_device = [torch.cat([getattr(g, name) for g in grams]) for name in gram_fields] if grams else []
    on_device += [torch.cat(parts) for parts in zip(*res, strict=True)]
    on_device += [torch.cat(parts) for parts in zip(*conv, strict=True)]
    on_device += [torch.cat(parts) for parts in zip(*scalars, strict=True)]
    host = iter(to_host(on_device))
    table, gram_ok, spectra = [], [], []
    if grams:
        # On the host: a GPU solves a batch of float64 eigenproblems with N > 32 one matrix at a
        # time (torch's cuSOLVER dispatch), far slower than LAPACK on the host.
        stacked = GramStats(**{name: next(host) for name in gram_fields})
        metrics = metrics_from_stats(stacked, rank_tol, spectrum=True)
        table = torch.stack([metrics[name] for name in ACTIVATION_METRICS], dim=1).tolist()  # (P, M)
        gram_ok = stacked.finite.tolist()
        spectra = metrics["gram_eigenvalue"]  # (P, N)
    res_var, res_ok = (next(host).tolist(), next(host).tolist()) if res else ([], [])
    conv_norm, conv_ok = (next(host).tolist(), next(host).tolist()) if conv else ([], [])
    scalar_value, scalar_ok = (next(host).tolist(), next(host).tolist()) if scalars else ([], [])
    assert next(host, None) is None, "every transferred tensor is read once"

    cols: dict[str, list] = {c: [] for c in ROW_COLUMNS}

    def add(seed, tap, kind, index, metrics, values, bad, final):
        for metric, value in zip(metrics, values, strict=True):
            cols["seed"].append(seed)
            cols["layer"].append(tap.name)
            cols["index"].append(index)
            cols["kind"].append(kind)
            cols["metric"].append(metric)
            cols["value"].append(value)
            cols["final"].append(final)
            cols["overflow"].append(bad or not math.isfinite(value))

    start = {"gram": 0, "res": 0, "conv": 0, "scalar": 0}  # where each pass's entries begin in the host lists
    for p in passes:
        for tap, source, k in p.rows:  # rows in forward order
            if source == "scalar":
                at = start["scalar"] + k[0]
                for j, metric in enumerate(k[1]):
                    add(p.seed, tap, tap.kind, tap.index, (metric,), [scalar_value[at + j]],
                        not scalar_ok[at + j], tap.final)
                continue
            at = start[source] + k
            if source == "gram":
                metrics, values, ok = ACTIVATION_METRICS, table[at], gram_ok[at]
            elif source == "res":
                metrics, values, ok = ("res_var",), [res_var[at]], res_ok[at]
            else:
                metrics, values, ok = ("grad_norm",), [conv_norm[at]], conv_ok[at]
            add(p.seed, tap, tap.kind, tap.index, metrics, values, not ok, tap.final)
        final_tap = next((tap for tap, source, _ in p.rows if source == "gram" and tap.final), None)
        if final_tap is not None and p.final is not None:
            at = start["gram"] + p.final
            for rank, value in enumerate(spectra[at].tolist()):
                add(p.seed, final_tap, SPECTRUM, rank, ("gram_eigenvalue",), [value], not gram_ok[at], True)
        start["gram"] += 0 if p.grams is None else len(p.grams.act_var)
        start["res"] += len(p.res[0]) if p.res else 0
        start["conv"] += len(p.conv[0]) if p.conv else 0
        start["scalar"] += len(p.scalars[0]) if p.scalars else 0
    return cols


# ---------------------------------------------------------------------------------------------
# measure and its frame


def check_configs(model_config, probe_config) -> ProbeConfig:
    """Refuse anything but a model and a probe config that fit together; the probe config with its input
    resolved for the family (normlab.core.config.resolve_input)."""
    check_instance("model_config", model_config, ModelConfig)
    check_instance("probe_config", probe_config, ProbeConfig)
    name = resolve_input(model_config, probe_config)
    return probe_config if name == probe_config.input else dataclasses.replace(probe_config, input=name)


def check_progress(progress) -> None:
    check_callback("progress", progress, "progress(done, total, label)")


def _probe_pass(model_config: ModelConfig, probe_config: ProbeConfig, seed: int, device: torch.device,
                workspace: Workspace) -> Taps:
    """One seed's pass: init, inputs, forward, loss, backward; the statistics stay on the device."""
    if catalog.family(model_config.arch).tokens:
        return _token_pass(model_config, probe_config, seed, device, workspace)
    size = probe_config.image_size
    # Seeded init in a forked RNG: deterministic, and the caller's global random state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = build_model(model_config, (model_config.in_channels, size, size))
    model.train().to(device)
    x = make_inputs(probe_config, seed, model_config.in_channels).to(device).requires_grad_(True)
    labels = make_labels(probe_config.batch_size, model_config.num_classes, seed).to(device)
    return _measure(
        model, x,
        lambda logits: F.cross_entropy(logits.float(), labels),  # batch mean
        model.probe_points(), model.final, workspace,
    )


def _token_pass(model_config: ModelConfig, probe_config: ProbeConfig, seed: int, device: torch.device,
                workspace: Workspace) -> Taps:
    """A token family's pass: bytes in, next-token cross-entropy (mean over tokens), the gradient of
    every weight (the input is integers), with the transformer's reductions."""
    from normlab.science.transformer import next_token_loss

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = build_model(model_config)
    model.train().to(device)
    tokens, targets = (t.to(device) for t in make_tokens(probe_config, seed, model_config.seq_len))
    return _measure(model, tokens, lambda logits: next_token_loss(logits, targets), model.probe_points(),
                    model.final, workspace, _TokenReducer(workspace), list(model.weight_points()))


def probe_seeds(model_config: ModelConfig, probe_config: ProbeConfig, seeds: Sequence[int],
                device: torch.device | None = None,
                done: Callable[[int, int], None] | None = None) -> dict[str, list]:
    """The row columns (no config columns) of several seeds, measured together.

    Each seed has its own network, batch and pass; what is shared is the float64 workspace, the one
    batched eigensolve over every seed's activation points and the one transfer to the host (per
    group of seeds whose Gram matrices fill :data:`GROUP_BYTES`). The numbers equal those of the
    seeds run one by one. ``done(k, seed)`` is called after the k-th pass.
    """
    device = resolve_device(probe_config.device) if device is None else device
    workspace = Workspace()
    cols: dict[str, list] = {c: [] for c in ROW_COLUMNS}
    group: list[_Packed] = []
    for k, seed in enumerate(seeds, start=1):
        check_time()
        group.append(_pack(_probe_pass(model_config, probe_config, seed, device, workspace), seed))
        if sum(p.gram_bytes for p in group) >= GROUP_BYTES or k == len(seeds):
            for name, values in _rows(group, probe_config.rank_tol).items():
                cols[name].extend(values)
            group = []
        if done is not None:
            done(k, seed)
    return cols


def _frame(cols: dict[str, list], configs: Mapping[str, object]) -> pd.DataFrame:
    n = len(cols["value"])
    data = {
        "seed": np.asarray(cols["seed"], dtype=np.int64),
        "layer": cols["layer"],
        "index": np.asarray(cols["index"], dtype=np.int64),
        "kind": cols["kind"],
        "metric": cols["metric"],
        "value": np.asarray(cols["value"], dtype=np.float64),
        "final": np.asarray(cols["final"], dtype=bool),
        "overflow": np.asarray(cols["overflow"], dtype=bool),
    }
    for name, value in configs.items():
        # None stays None (object column); any other value keeps its own dtype.
        data[name] = pd.Series([value] * n, dtype=object if value is None else None)
    return pd.DataFrame(data)


def config_columns(model_config: ModelConfig, probe_config: ProbeConfig) -> dict[str, object]:
    """The config columns of a frame: every ModelConfig field, every ProbeConfig field but the seeds."""
    model = model_config.to_dict()
    probe = probe_config.to_dict()
    return {**{k: model[k] for k in MODEL_FIELDS}, **{k: probe[k] for k in PROBE_FIELDS}}


def measure(model_config: ModelConfig, probe_config: ProbeConfig,
            progress: Progress | None = None) -> pd.DataFrame:
    """Probe a network at initialization for every seed of ``probe_config``, with no limit applied.

    The guarded entry point is ``normlab.run_probes`` (normlab.ops.run): the budget first, then this.

    Args:
        model_config: the network.
        probe_config: inputs, batch size, seeds, device, rank tolerance.
        progress: called as ``progress(done, total, label)`` after each seed.

    Returns:
        A tidy frame, one row per (seed, layer, metric); columns :data:`FRAME_COLUMNS`
        (see docs/probes.md).
    """
    probe_config = check_configs(model_config, probe_config)
    check_progress(progress)
    seeds = probe_config.seed_list
    label = describe(model_config, short=True)

    def done(k: int, seed: int) -> None:
        if progress is not None:
            progress(k, len(seeds), f"{label} seed {seed}")

    cols = probe_seeds(model_config, probe_config, seeds, resolve_device(probe_config.device), done)
    return _frame(cols, config_columns(model_config, probe_config))


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, min, max and count over seeds per (layer, index, kind, metric) and configuration.

    Non-finite values propagate (a NaN seed makes the mean NaN), and ``overflow`` is set when any
    seed overflowed: a summary never hides a blow-up.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a probe frame (a pandas DataFrame of run_probes); "
                         f"got {type(frame).__name__}")
    missing = [c for c in ("value", *KEY_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame must be a probe frame; missing columns {missing}")
    keys = [c for c in frame.columns if c not in ("seed", "value", "final", "overflow")]
    # Group on a group id, then take each group's key values from its first row: config columns
    # keep their own values (8, None), where grouping on them directly would turn them into floats.
    gid = frame.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    first = ~pd.Series(gid).duplicated().to_numpy()
    try:
        values = frame["value"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        dtype = frame["value"].dtype
        raise ValueError(f"frame's value column must hold numbers; got dtype {dtype}") from None
    by = pd.Series(values).groupby(gid)
    has_nan = pd.Series(np.isnan(values)).groupby(gid).any().to_numpy()
    flags = frame[[c for c in ("final", "overflow") if c in frame.columns]].reset_index(drop=True)
    out = frame.loc[first, keys].reset_index(drop=True)
    # sort=False numbers groups by first appearance, so first rows come in group-id order
    assert (gid[first] == np.arange(len(out))).all(), "group ids out of first-appearance order"
    # pandas' mean/min/max skip NaN; a NaN seed must show, so those groups get NaN.
    out["mean"] = np.where(has_nan, np.nan, by.mean().to_numpy())
    out["min"] = np.where(has_nan, np.nan, by.min().to_numpy())
    out["max"] = np.where(has_nan, np.nan, by.max().to_numpy())
    out["n"] = by.size().to_numpy()
    for flag in flags.columns:
        out[flag] = flags[flag].groupby(gid).any().to_numpy()
    return out[[*KEY_COLUMNS, *SUMMARY_STATS, *flags.columns, *[k for k in keys if k not in KEY_COLUMNS]]]


# ---------------------------------------------------------------------------------------------
# Sweeps


def _defaulted(base: ModelConfig) -> set[str]:
    """The size fields of ``base`` that hold their preset or family default (so they may re-resolve)."""
    preset = PRESETS.get(base.preset, {}) if base.preset else {}
    out = set()
    info = catalog.family(base.arch)
    for name, default in (("depth", info.default_depth), ("width", info.default_width)):
        if getattr(base, name) == preset.get(name, default):
            out.add(name)
    if base.stages == preset.get("stages", 1 if base.residual else None):
        out.add("stages")
    if base.num_classes == (VOCAB if info.tokens else preset.get("num_classes", DEFAULT_CLASSES)):
        out.add("num_classes")  # a transformer's vocabulary, or the classes of the paper's families
    if base.group_size is None and base.groups is not None and base.groups == math.gcd(
        DEFAULT_GROUPS, *base.widths
    ):
        out.add("groups")
    return out


def vary(base: ModelConfig, changes: Mapping[str, object]) -> ModelConfig:
    """``base`` with ``changes``; fields ``base`` took from defaults re-resolve for the new values.

    So a width sweep of a GroupNorm net with the default group count picks a count dividing each
    width, and an arch sweep does not carry a resnet's stage count into an mlp. Fields given in
    ``changes`` always win; conflicting explicit values raise the config's own ValueError.
    """
    values = base.to_dict()
    values.update(changes)
    resolved = _defaulted(base)
    if "preset" in changes and base.preset is not None:
        resolved |= {"depth", "width", "stages"}  # they came from the old preset
    if "preset" in changes and "arch" not in changes:
        # a new preset brings its own arch; dropping the preset keeps the family it had
        values["arch"] = ModelConfig.arch if changes["preset"] is not None else base.arch
    if ("arch" in changes or "preset" in changes) and "stages" not in changes:
        resolved.add("stages")
    if ("arch" in changes or "preset" in changes) and base.norm == catalog.family(base.arch).default_norm:
        resolved.add("norm")  # the old family's default normalizer: the new family picks its own
    for name in ("depth", "width", "stages", "groups", "norm", "num_classes"):
        if name in resolved and name not in changes:
            values[name] = None
    if "groups" in changes and "group_size" not in changes:
        values["group_size"] = None
    if "group_size" in changes and "groups" not in changes:
        values["groups"] = None
    return ModelConfig(**values)


def check_over(over) -> int:
    """Refuse a malformed sweep mapping by name; the number of combinations it spans (not enumerated).

    Past MAX_SWEEP_POINTS combinations a sweep is refused here, whatever the operator's limits, before
    anything enumerates it.
    """
    if not isinstance(over, Mapping):
        raise ValueError(f"over must be a mapping field -> list of values; got {type(over).__name__}")
    unknown = [k for k in over if k not in SWEEP_FIELDS]
    if unknown:
        raise ValueError(f"Unknown sweep field(s) {unknown}; expected some of {list(SWEEP_FIELDS)}")
    count = 1
    for key, values in over.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"sweep values for {key!r} must be a non-empty list; got {values!r}")
        try:
            count *= len(values)
        except OverflowError:  # a range past sys.maxsize
            count = math.inf
        if count > MAX_SWEEP_POINTS:
            shown = "more than 2**63" if math.isinf(count) else f"{count:,}"
            raise ValueError(f"over spans {shown} combinations; a sweep has at most {MAX_SWEEP_POINTS:,}")
    return count


def sweep_configs(model_config: ModelConfig, probe_config: ProbeConfig,
                  over: Mapping[str, Sequence]) -> list[tuple[dict, ModelConfig, ProbeConfig]]:
    """Every combination of ``over`` as (changes, network, probe), in the sweep's order.

    Call :func:`check_over` (and bound its count) first: this enumerates the whole product.
    """
    check_over(over)
    model_keys = [k for k in over if k in MODEL_FIELDS]
    out = []
    for combo in itertools.product(*over.values()):
        changes = dict(zip(over, combo, strict=True))
        try:
            mc = vary(model_config, {k: changes[k] for k in model_keys})
            probe_changes = {k: v for k, v in changes.items() if k not in model_keys}
            pc = dataclasses.replace(probe_config, **probe_changes)
        except (ValueError, TypeError) as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in changes.items())
            raise ValueError(f"sweep point {shown} is invalid: {err}") from err
        out.append((changes, mc, pc))
    return out


# ---------------------------------------------------------------------------------------------
# Any module


def probe_module(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    modules: Iterable[str] | None = None,
    *,
    rank_tol: float = DEFAULT_RANK_TOL,
    seed: int = 0,
) -> pd.DataFrame:
    """The same metrics on any ``nn.Module``, in its current mode (``.train()`` for the paper's setting).

    Args:
        module: the network.
        inputs: one batch (N, ...), N >= 2, on the module's device.
        targets: class labels (N,) for a cross-entropy loss, or a float tensor shaped like the output
            for a mean squared error. None: random labels from ``seed`` when the output is (N, K),
            else the loss 0.5 * mean(output^2).
        modules: names of the modules whose outputs get the activation metrics (kind ``act``).
            Default: a normlab network's own probe points (so the rows are those of
            :func:`measure`, residual branches included), else every normalization layer. Every
            conv/linear output gets ``grad_norm``.
        rank_tol: numerical_rank's tolerance.
        seed: seed of the random labels.

    Returns:
        A frame with columns ``seed, layer, index, kind, metric, value, final, overflow``; the final
        representation is the module's ``final`` attribute when it has one, else its last activation
        point. No parameter's ``.grad`` is touched.

    Raises:
        ValueError: an argument of the wrong kind, or inputs (targets) the module cannot run on, e.g.
            an integer batch into a Linear layer; the message names it and quotes torch's reason.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0 or inputs.shape[0] < 2:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be a tensor batch (N, ...) with N >= 2; got {shape}")
    if targets is not None and (not isinstance(targets, torch.Tensor) or targets.dim() == 0
                                or targets.shape[0] != inputs.shape[0]):
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"targets must be None or a tensor with one entry per sample "
                         f"({inputs.shape[0]}, ...); got {shape}")
    if not (isinstance(rank_tol, (int, float)) and 0 < rank_tol < 1):
        raise ValueError(f"rank_tol must be a number between 0 and 1 (exclusive); got {rank_tol!r}")
    check_int("seed", seed, 0, MAX_SEED)
    named = dict(module.named_modules())
    if modules is not None:
        modules = check_items("modules", modules, len(named))
        odd = [n for n in modules if not isinstance(n, str)]
        if odd:
            raise ValueError(f"modules must name submodules of the module (strings); got {odd[:5]!r}")
        unknown = [n for n in modules if n not in named]
        if unknown:
            shown = [n for n in named if n][:20]
            raise ValueError(f"Unknown module name(s) {unknown} in modules; the module has e.g. {shown}")
    if modules is None and hasattr(module, "probe_points"):
        points = list(module.probe_points())
    else:
        points = [(n, CONV, m) for n, m in named.items()
                  if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
        if modules is None:
            points += [(n, ACT, m) for n, m in named.items() if isinstance(m, NORM_LAYERS)]
        else:
            points += [(n, ACT, named[n]) for n in modules]
    try:
        taps = _measure(module, x_for_probe(inputs), _loss_for(targets, seed), points,
                        getattr(module, "final", None))
    except (RuntimeError, IndexError) as err:  # torch's word on a dtype, shape or class the module refuses
        if isinstance(err, (ComputeTimeout, torch.OutOfMemoryError)):
            raise
        given = f"inputs {inputs.dtype} {tuple(inputs.shape)}"
        if targets is not None:
            given += f" with targets {targets.dtype} {tuple(targets.shape)}"
        raise ValueError(f"{given} do not run through the module: {err}") from err
    return _frame(_rows([_pack(taps, seed)], rank_tol), {})


def x_for_probe(inputs: torch.Tensor) -> torch.Tensor:
    """A detached copy of the batch; a float one requires grad, so the backward pass reaches every layer."""
    x = inputs.detach().clone()
    if x.is_floating_point():
        x.requires_grad_(True)
    return x


def _loss_for(targets: torch.Tensor | None, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """probe_module's loss: cross-entropy on the targets (or seeded random labels), else 0.5 mean(out^2)."""

    def loss_fn(output):
        output = output[0] if isinstance(output, (tuple, list)) else output
        if targets is None:
            if output.dim() == 2 and output.shape[1] >= 2:
                labels = make_labels(output.shape[0], output.shape[1], seed).to(output.device)
                return F.cross_entropy(output.float(), labels)
            return 0.5 * output.float().square().mean()
        if targets.is_floating_point():
            return F.mse_loss(output.float(), targets.to(output.device).float())
        return F.cross_entropy(output.float(), targets.to(output.device))

    return loss_fn



# ---------------------------------------------------------------------------------------------
# What the pictures need: per-point cosine matrices, projections and bounded samples (one pass)

# Bounds of a detail: the N x N matrices of at most this many trunk points (evenly spaced, the final
# one always kept) and this many activation values per point, so a detail stays a few MB at batch 256.
DETAIL_POINTS = 48
DETAIL_SAMPLES = 4096


@dataclasses.dataclass(frozen=True)
class ProbeDetail:
    """One seed's samples as the pictures see them, at the trunk points along depth; plain numpy only.

    P points (block outputs of a ResNet, else every layer's activation), N samples, C conv/linear outputs.
    """

    layers: tuple[str, ...]  # (P,) probe point names in forward order
    positions: np.ndarray  # (P,) 1-based depth (block or layer), as the dashboard's depth_rows counts it
    cosine: np.ndarray  # (P, N, N) float32 cosine similarity of the flattened samples (the cos_sim matrix)
    projection: np.ndarray  # (P, N, 2) float32 centered samples on their top two principal directions,
    # in units of the root-mean-square sample norm (a collapsed batch sits near the origin)
    activations: np.ndarray  # (P, S) float32 a fixed random sample of the activation values
    grad_layers: tuple[str, ...]  # (C,) conv/linear outputs in forward order
    grad_norms: np.ndarray  # (C, N) float64 per-sample norms of dL/dz (rows sum in squares to grad_norm)


class _DetailReducer(_Reducer):
    """The probes' reducer that also keeps a bounded sample of each activation's values."""

    def __init__(self, samples: int, seed: int) -> None:
        super().__init__()
        self.samples = samples
        # its own stream of the user seed (3: after data.py's init, inputs and labels streams)
        state = np.random.SeedSequence([int(seed), 3]).generate_state(1, dtype=np.uint64)
        self.generator = torch.Generator().manual_seed(int(state[0]) >> 1)
        self.values: dict[int, torch.Tensor] = {}  # id(GramStats) -> (S,) float32

    def __call__(self, output: torch.Tensor, kind: str):
        stats = super().__call__(output, kind)
        if isinstance(stats, GramStats) and id(stats) not in self.values:
            flat = output.detach().reshape(-1)
            # with replacement, ``samples`` from every point: points of different sizes stack as (P, S)
            at = torch.randint(flat.numel(), (self.samples,), generator=self.generator)
            self.values[id(stats)] = flat[at.to(flat.device)].float().cpu()
        return stats


def _principal_plane(gram_centered: torch.Tensor, sq_norms: torch.Tensor) -> torch.Tensor:
    """(P, N, 2) coordinates on the top two principal directions from the centered Gram (P, N, N).

    X_c = U S V^T gives X_c V = U S: the eigenvectors of G_c = X_c X_c^T scaled by the square roots of
    their eigenvalues, no D x D covariance needed. Signs are fixed so that the largest coordinate is
    positive (eigh's sign is arbitrary); units are the batch's root-mean-square sample norm.
    """
    ok = torch.isfinite(gram_centered).all(-1).all(-1)  # (P,)
    eye = torch.eye(gram_centered.shape[-1], dtype=gram_centered.dtype)
    eig, vec = torch.linalg.eigh(torch.where(ok[:, None, None], gram_centered, eye))
    top = vec[..., -2:].flip(-1) * eig[:, None, -2:].flip(-1).clamp_min(0.0).sqrt()  # (P, N, 2)
    sign = torch.sign(top.gather(1, top.abs().argmax(1, keepdim=True)))
    top = top * torch.where(sign == 0, 1.0, sign)
    rms = sq_norms.mean(-1).sqrt().clamp_min(torch.finfo(torch.float64).tiny)  # (P,)
    return torch.where(ok[:, None, None], top / rms[:, None, None], torch.nan)


def _spread(count: int, keep: int) -> list[int]:
    """At most ``keep`` indices of ``range(count)``, evenly spaced, first and last included."""
    if count <= keep:
        return list(range(count))
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def probe_detail(model_config: ModelConfig, probe_config: ProbeConfig, *, points: int = DETAIL_POINTS,
                 samples: int = DETAIL_SAMPLES) -> ProbeDetail:
    """The first seed's pass of :func:`measure`, keeping what the pictures of the samples need.

    The same hooks reduce every activation to its Gram statistics; the cosine matrices and the principal
    plane come from those N x N matrices, so no activation outlives the pass. Alongside, each trunk point
    keeps ``samples`` of its values and every conv/linear output the per-sample norms of dL/dz.

    Args:
        model_config: the network.
        probe_config: inputs, batch size, device; only its first seed is used.
        points: at most this many trunk points are kept (evenly spaced along depth, the last included).
        samples: activation values kept per point, drawn with a seeded generator.
    """
    probe_config = check_configs(model_config, probe_config)
    if catalog.family(model_config.arch).tokens:
        raise ValueError(f"probe_detail pictures image samples; arch {model_config.arch!r} reads tokens "
                         f"(its rows come from run_probes)")
    for name, value in (("points", points), ("samples", samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{name} must be a whole number >= 2; got {value!r}")
    seed = probe_config.seed
    device = resolve_device(probe_config.device)
    size = probe_config.image_size
    with torch.random.fork_rng(devices=[]):  # the same network and batch as measure's first seed
        torch.manual_seed(derive_seed(seed, "init"))
        model = build_model(model_config, (model_config.in_channels, size, size))
    model.train().to(device)
    x = make_inputs(probe_config, seed, model_config.in_channels).to(device).requires_grad_(True)
    labels = make_labels(probe_config.batch_size, model_config.num_classes, seed).to(device)
    reducer = _DetailReducer(samples, seed)
    per_sample: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(grad_norm) -> (it, (N,) norms)

    def grad_reduce(grad: torch.Tensor) -> torch.Tensor:
        total = frobenius_norm(grad, reducer.workspace)
        rows = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1, dtype=torch.float64)
        per_sample[id(total)] = (total, rows)  # the tap holds this very tensor
        return total

    with record(model, model.probe_points(), reduce=reducer, grad_reduce=grad_reduce,
                final=model.final) as taps:
        output = model(x)
        reducer.clear()
        loss = F.cross_entropy(output.float(), labels)
        torch.autograd.grad(loss, [x], allow_unused=True)
    trunk_kind = BLOCK if any(t.kind == BLOCK for t in taps.taps) else ACT
    trunk = [t for t in taps.taps if t.kind == trunk_kind and isinstance(t.value, GramStats)]
    kept = [trunk[i] for i in _spread(len(trunk), points)]
    convs = [t for t in taps.taps if t.kind == CONV and t.grad_norm is not None]
    if not kept:
        raise ValueError(f"{describe(model_config, short=True)} has no activation probe points to picture")
    stats = stack_stats([t.value for t in kept])  # (P, ...)
    host = to_host([stats.gram_centered, stats.proj, stats.mean_sq, stats.sq_norms, stats.finite,
                    *[per_sample[id(t.grad_norm)][1] for t in convs]])
    host_stats = GramStats(stats.act_var.cpu(), stats.act_sq_mean.cpu(), *host[:5])
    cosine = normalized_gram(host_stats.gram, host_stats.sq_norms, host_stats.zero)  # (P, N, N)
    cosine = torch.where(host_stats.finite[:, None, None], cosine, torch.nan)
    return ProbeDetail(
        layers=tuple(t.name for t in kept),
        positions=np.asarray([t.index + 1 for t in kept], dtype=np.int64),
        cosine=cosine.to(torch.float32).numpy(),
        projection=_principal_plane(host_stats.gram_centered, host_stats.sq_norms).to(torch.float32).numpy(),
        activations=np.stack([reducer.values[id(t.value)].numpy() for t in kept]),
        grad_layers=tuple(t.name for t in convs),
        grad_norms=(torch.stack(host[5:]).numpy() if convs
                    else np.zeros((0, probe_config.batch_size))),
    )
