"""The one table of normalizers and metrics: names, labels, traits, cost terms, colours and help texts.

Plain data, no torch: config, theory, budget, the CLI and every page read it, and ``normlab.norms``
keys its factories by its names. Adding a normalizer is one ``NormInfo`` line here plus one factory
entry in ``normlab.norms.NORMALIZERS``; a name in one table but not the other is refused when
``normlab.norms`` is imported (and by a test). Knows nothing of modules, frames or the UI.

The name collections (``NORM_NAMES``, ``GROUPED_NORMS``, ...) are live views of :data:`NORMALIZERS`,
so an entry registered at run time (a test's toy normalizer) is seen everywhere at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence, Set
from dataclasses import dataclass

FALLBACK_COLOR = "#999999"  # a normalizer without a colour of its own
SLOTS = ("norm", "activation", "weight", "none")
THEORY_FAMILIES = ("slot", "trunk", "unnormalized")


@dataclass(frozen=True)
class NormInfo:
    """What the rest of normlab knows of a normalizer without building it."""

    name: str
    label: str  # human-readable name for plots, menus and the CLI's list
    # where it acts: "norm" (its own slot after the conv), "activation" (replaces the activation:
    # the EvoNorms), "weight" (inside the conv: WN, SWS) or "none"
    slot: str
    grouped: bool = False  # takes a group count (groups / group_size)
    batch_dependent: bool = False  # statistics mix samples (BatchNorm, EvoNorm-B0)
    # Theory family (normlab.theory): "slot" divides by activation statistics in the norm slot, so a
    # normalized projection shortcut restarts the trunk; "trunk" acts after the addition of a
    # post-activation block; "unnormalized" propagates like a He-initialised net.
    theory: str = "unnormalized"
    rank_bound: bool = False  # the rank bounds of spec section 4 speak of it (BN and the GroupNorm family)
    # Cost terms (normlab.budget): activation-sized tensors autograd keeps per norm -> activation unit
    # (measured with torch.autograd.graph.saved_tensors_hooks), and copies of each weight alive in a probe.
    saved_per_unit: int = 1
    weight_copies: int = 1
    color: str = FALLBACK_COLOR  # Tableau 10, the same on every page

    def __post_init__(self) -> None:
        assert self.slot in SLOTS, f"slot {self.slot!r} of {self.name!r} is not one of {SLOTS}"
        assert self.theory in THEORY_FAMILIES, f"theory {self.theory!r} of {self.name!r}: not a family"

    @property
    def family(self) -> str:
        """"activation" (divides by activation statistics), "parametric" (normalizes weights) or "none"."""
        families = {"norm": "activation", "activation": "activation", "weight": "parametric"}
        return families.get(self.slot, "none")


NORMALIZERS: dict[str, NormInfo] = {
    n.name: n
    for n in (
        NormInfo("none", "No normalization", "none", saved_per_unit=1, color="#4d4d4d"),
        NormInfo("batchnorm", "BatchNorm", "norm", batch_dependent=True, theory="slot", rank_bound=True,
                 saved_per_unit=2, color="#1f77b4"),
        NormInfo("layernorm", "LayerNorm", "norm", theory="slot", rank_bound=True, saved_per_unit=2,
                 color="#d62728"),
        NormInfo("instancenorm", "InstanceNorm", "norm", theory="slot", rank_bound=True, saved_per_unit=2,
                 color="#2ca02c"),
        NormInfo("groupnorm", "GroupNorm", "norm", grouped=True, theory="slot", rank_bound=True,
                 saved_per_unit=2, color="#9467bd"),
        NormInfo("frn", "Filter Response Norm + TLU", "norm", theory="slot", saved_per_unit=4,
                 color="#8c564b"),
        NormInfo("evonorm_b0", "EvoNorm-B0", "activation", batch_dependent=True, theory="trunk",
                 saved_per_unit=5, color="#17becf"),
        NormInfo("evonorm_s0", "EvoNorm-S0", "activation", grouped=True, theory="trunk", saved_per_unit=6,
                 color="#bcbd22"),
        NormInfo("weightnorm", "Weight Normalization", "weight", saved_per_unit=2, weight_copies=3,
                 color="#ff7f0e"),
        NormInfo("sws", "Scaled Weight Standardization", "weight", saved_per_unit=1, weight_copies=3,
                 color="#e377c2"),
    )
}


def normalizer(name: str) -> NormInfo:
    """The catalog entry of ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in NORMALIZERS:
        raise ValueError(f"Unknown normalizer {name!r}; expected one of {sorted(NORMALIZERS)}")
    return NORMALIZERS[name]


def label(name: str) -> str:
    """The display name of a normalizer; an unknown name shows as itself."""
    return NORMALIZERS[name].label if name in NORMALIZERS else str(name)


def color(name: str) -> str:
    return NORMALIZERS[name].color if name in NORMALIZERS else FALLBACK_COLOR


class NameList(Sequence):
    """The names of the catalog entries that pass ``keep``, in table order, read afresh on every use."""

    def __init__(self, keep: Callable[[NormInfo], bool] = lambda n: True) -> None:
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, info in NORMALIZERS.items() if self._keep(info))

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and self._names() == tuple(other)

    __hash__ = None  # mutable view

    def __add__(self, other):
        return self._names() + tuple(other)

    def __repr__(self) -> str:
        return repr(self._names())


class NameSet(Set):
    """The catalog names passing ``keep`` as a live set; set algebra on it gives frozensets."""

    def __init__(self, keep: Callable[[NormInfo], bool]) -> None:
        self._list = NameList(keep)

    @classmethod
    def _from_iterable(cls, it):
        return frozenset(it)

    def __contains__(self, name) -> bool:
        return name in self._list

    def __iter__(self) -> Iterator[str]:
        return iter(self._list)

    def __len__(self) -> int:
        return len(self._list)

    def __repr__(self) -> str:
        return f"NameSet({set(self._list)!r})"


NORM_NAMES = NameList()
GROUPED_NORMS = NameSet(lambda n: n.grouped)
BATCH_DEPENDENT_NORMS = NameSet(lambda n: n.batch_dependent)
SLOT_NORMS = NameSet(lambda n: n.theory == "slot")
TRUNK_NORMS = NameSet(lambda n: n.theory == "trunk")
UNNORMALIZED = NameSet(lambda n: n.theory == "unnormalized")
RANK_NORMS = NameSet(lambda n: n.rank_bound)


# --- Metrics -----------------------------------------------------------------------------------------------

# Probe-point kinds (normlab.models): what a tapped module's output is.
KINDS = ("act", "block", "res", "conv")


@dataclass(frozen=True)
class MetricInfo:
    """A metric of spec section 3: where it is read, how to title it, what it means, how to plot it."""

    name: str
    kinds: tuple[str, ...]  # probe-point kinds with a row of this metric ("spectrum": the final features)
    title: str  # axis title
    help: str  # the definition, one line
    unit: str = ""  # "" for dimensionless quantities
    log_y: bool = False  # a log axis reads it best (it spans orders of magnitude)


_ACT_POINTS = ("act", "block")
METRIC_INFO: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("act_var", _ACT_POINTS, "activation variance (act_var)",
                   "per-channel variance over (N,H,W), mean over channels", log_y=True),
        MetricInfo("act_sq_mean", _ACT_POINTS, "squared channel mean (act_sq_mean)",
                   "per-channel mean over (N,H,W), squared, mean over channels", log_y=True),
        MetricInfo("res_var", ("res",), "residual-branch variance (res_var)",
                   "act_var of the residual branch before the addition", log_y=True),
        MetricInfo("cos_sim", _ACT_POINTS, "cosine similarity (cos_sim)",
                   "mean off-diagonal cosine similarity between samples (uncentered)"),
        MetricInfo("cos_sim_centered", _ACT_POINTS, "centered cosine similarity",
                   "cos_sim after subtracting the batch-mean vector"),
        MetricInfo("stable_rank", _ACT_POINTS, "stable rank",
                   "tr(M) / ||M||_2 of the normalized Gram matrix, in [1, N]"),
        MetricInfo("effective_rank", _ACT_POINTS, "effective rank",
                   "exp(entropy) of the centered covariance spectrum"),
        MetricInfo("numerical_rank", _ACT_POINTS, "numerical rank",
                   "singular values of the centered features above rank_tol * sigma_max"),
        MetricInfo("grad_norm", ("conv",), "gradient norm ‖∂L/∂z‖",
                   "Frobenius norm over the batch of dL/dz at each conv/linear output z", log_y=True),
        MetricInfo("gram_eigenvalue", ("spectrum",), "Gram eigenvalue",
                   "eigen-spectrum of the final features' Gram matrix, largest first", log_y=True),
    )
}
METRICS = tuple(METRIC_INFO)
# The metrics of an activation tensor ("act" and "block" probe points), in frame order.
ACTIVATION_METRICS = tuple(m for m, info in METRIC_INFO.items() if info.kinds == _ACT_POINTS)


def metric_title(name: str) -> str:
    return METRIC_INFO[name].title if name in METRIC_INFO else str(name)
