"""Frozen configuration dataclasses and the preset table; knows nothing of torch or the UI.

Every user mistake is refused here, in ``__post_init__``, with a ValueError that names the field,
the bad value and what is allowed, before any tensor is allocated.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass

from normlab.core import catalog
from normlab.core.catalog import ARCH_NAMES, GROUPED_NORMS, NORM_NAMES

# The callbacks every long computation takes: progress(done, total, label) and should_stop().
Progress = Callable[[int, int, str], None]
ShouldStop = Callable[[], bool]

ARCHS = ARCH_NAMES  # the architecture families of the catalog, in its order
WN_ACT_PLACEMENTS = ("after_add", "in_branch")
# Where a transformer's norm sits (spec section 5): post-LN, pre-LN, peri-LN, Mix-LN, LayerNorm Scaling.
PLACEMENTS = ("post", "pre", "peri", "mix", "lns")
VOCAB = 256  # a transformer reads bytes: its vocabulary and its classifier outputs
# A hard ceiling on a transformer's tokens; a server's NORMLAB_MAX_SEQ_LEN (normlab.ops.settings) is lower.
MAX_SEQ_LEN = 65_536
DEVICES = ("auto", "cpu", "cuda", "mps")

# Presets are plain tables: fixed field values plus, for the VGG-style nets, the per-layer plan.
# A plan entry is (width, stride).
_VGG10_PLAN = (
    (64, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2), (512, 1), (512, 1),
)
# The paper code's cfg_20: the fourth group of four is 256 wide, not 512 (spec section 2).
_VGG20_PLAN = (
    ((64, 1),) * 3 + ((64, 2),) + ((128, 1),) * 3 + ((128, 2),) + ((256, 1),) * 3 + ((256, 2),)
    + ((256, 1),) * 3 + ((256, 2),) + ((512, 1),) * 4
)
# The paper's code trains on CIFAR-100 and leaves its final nn.Linear at PyTorch's default init; both set
# the absolute size of every dL/dz, so the presets take them (spec section 2). Free networks keep a
# Kaiming-initialised head and 10 classes.
PAPER_CLASSES = 100
PRESETS: dict[str, dict] = {
    # The paper's non-residual CNNs: 10 and 20 conv layers, widths 64 -> 512, w/2 = stride 2.
    "vgg10": {"arch": "cnn", "depth": 10, "width": 64, "plan": _VGG10_PLAN, "num_classes": PAPER_CLASSES},
    "vgg20": {"arch": "cnn", "depth": 20, "width": 64, "plan": _VGG20_PLAN, "num_classes": PAPER_CLASSES},
    # The paper's code: stem 32, three stages of 9 BasicBlocks with widths 32/64/128.
    "resnet56": {"arch": "resnet", "depth": 9, "width": 32, "stages": 3, "num_classes": PAPER_CLASSES},
}
DEFAULT_CLASSES = 10  # free networks: the probe's random labels over 10 classes (spec section 3)

# GroupNorm's default is 32 groups (Wu & He 2018), reduced to a count that divides every width.
DEFAULT_GROUPS = 32
MAX_STAGES = 6
# Hard ceilings far above any operator budget (normlab.ops.budget): past them even validating a config
# (its layer plan, its divisors, its list of seeds) would cost time or fill the memory, so they are
# refused first, by arithmetic alone. Without an operator's limit (the command line, the API) they are
# all that stands between a typo and a MemoryError.
MAX_DEPTH = 10_000
MAX_WIDTH = 65_536
MAX_CHANNELS = MAX_WIDTH * 2 ** (MAX_STAGES - 1)  # the last stage of the widest residual net
MAX_SEED = 2**62
MAX_SEEDS = 10_000  # seeds of one probe; a server's NORMLAB_MAX_SEEDS is 16
MAX_SWEEP_POINTS = 10_000  # combinations of one sweep, each validated and priced before any runs
MAX_ITEMS = 1_000  # entries of a list-valued field (a study's archs, norms, groups)


def _residual() -> str:
    """The residual families, as a message names them: 'resnet'."""
    return " or ".join(repr(a.name) for a in catalog.ARCHITECTURES.values() if a.residual)


def choices(values) -> str:
    """The allowed values, for a message: 'a', 'b', 'c'."""
    return ", ".join(repr(v) for v in values)


def check_int(name: str, value, low: int = 1, high: int | None = None) -> None:
    """Refuse anything but a whole number in [low, high] (numpy integers count; bools do not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number >= {low}; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}")
    if high is not None and value > high:
        shown = "2**62" if high == MAX_SEED else f"{high:,}"
        raise ValueError(f"{name} must be between {low} and {shown}; got {value}")


def check_real(name: str, value, low: float, high: float | None = None, *, open_low: bool = False,
               open_high: bool = False) -> None:
    """A finite number in [low, high], either end optionally open (numpy scalars count as numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    too_low = value <= low if open_low else value < low
    too_high = high is not None and (value >= high if open_high else value > high)
    if too_low or too_high:
        lo = f"{'(' if open_low else '['}{low}"
        hi = f"{high}{')' if open_high else ']'}" if high is not None else "inf)"
        raise ValueError(f"{name} must be in {lo}, {hi}; got {value!r}")


def check_choice(name: str, value, allowed) -> None:
    """Refuse anything but one of the names ``allowed`` (a string: an array or a list is no name)."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {choices(allowed)}")


def check_items(name: str, value, most: int = MAX_ITEMS) -> tuple:
    """The entries of a list-valued field as a tuple, at most ``most`` of them.

    One value that is not a list (a string, a number) is a list of one. No more than ``most`` + 1
    entries are ever taken, so a huge range or an endless generator is refused at once, by name.
    """
    if isinstance(value, (str, bytes)):
        return (value,)
    try:
        entries = iter(value)
    except TypeError:  # a number, None, a 0-d array: one value, checked as an entry by the caller
        return (value,)
    out = tuple(itertools.islice(entries, most + 1))
    if len(out) > most:
        raise ValueError(f"{name} must list at most {most:,} values; got more")
    return out


def check_callback(name: str, value, call: str) -> None:
    """Refuse anything but None or a function, naming how it is called: 'progress(done, total, label)'."""
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be a callable {call} or None; got {type(value).__name__}")


def check_instance(name: str, value, cls: type) -> None:
    """Refuse anything but an instance of ``cls`` (a config, the limits), naming the argument."""
    if not isinstance(value, cls):
        raise ValueError(f"{name} must be a normlab {cls.__name__}; got {type(value).__name__}")


def _differs(given, fixed) -> bool:
    """Whether a field's value differs from a preset's; an array or another odd value always does."""
    return not (isinstance(given, (str, numbers.Integral)) and given == fixed)


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false; got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """What network to build: family, normalizer and sizes.

    ``depth`` and ``width`` mean what the family's catalog row says: hidden layers and units (mlp), conv
    layers and channels (cnn), blocks per stage and the first stage's width, doubling per stage (resnet),
    blocks and the model width D (transformer).
    Sizes left as ``None`` come from the preset, else from the family's default.
    """

    arch: str = "resnet"  # one of ARCHS; a preset fixes it
    # one of catalog.allowed_norms(arch); None: the family's default_norm (batchnorm for the paper's
    # families, layernorm for the transformer)
    norm: str | None = None
    depth: int | None = None  # None: preset or the family's default_depth (normlab.core.catalog)
    width: int | None = None  # None: preset or the family's default_width
    groups: int | None = None  # GroupNorm / EvoNorm-S0 group count; None: from group_size or default
    group_size: int | None = None  # channels per group, the alternative to groups
    preset: str | None = None  # one of PRESETS, or None for a free network
    stages: int | None = None  # residual families only: stages of `depth` blocks; None: preset or 1
    preact: bool = False  # residual: pre-activation blocks (He et al. 2016b)
    skipinit: bool = False  # residual: learnable branch scale alpha initialised to 0 (De & Smith 2020)
    # weightnorm resnet: corrected ReLU after each addition (the paper's code) or inside the branch
    wn_act: str = "after_add"
    in_channels: int = 3  # input image channels
    # classifier outputs; the probe's random labels use the same count. None: the preset's (100, as the
    # paper's CIFAR-100) or DEFAULT_CLASSES
    num_classes: int | None = None
    # Transformer only (spec section 5); any other family refuses a value other than the default.
    placement: str = "pre"  # one of PLACEMENTS: pre-LN is what GPT-2 and most models since use
    heads: int = 4  # attention heads H; must divide the width D
    seq_len: int = 32  # tokens T per sequence: enough for the laws to show, cheap on a CPU
    causal: bool = True  # causal (decoder) attention; False: bidirectional
    residual_scale: float = 1.0  # each branch is multiplied by it (e.g. 1/sqrt(L), Noci et al. 2022)
    qk_norm: bool = False  # the norm applied to queries and keys per head before the dot product
    ffn: bool = True  # False: attention-only blocks (Dong et al. 2021's ablation)
    skip: bool = True  # False: no residual connection (Dong et al.'s pure attention, with ffn=False)

    def __post_init__(self) -> None:
        self._check_transformer_fields()
        if self.norm is not None:
            check_choice("normalizer (norm)", self.norm, NORM_NAMES)
        check_choice("wn_act", self.wn_act, WN_ACT_PLACEMENTS)
        _check_bool("preact", self.preact)
        _check_bool("skipinit", self.skipinit)
        check_int("in_channels", self.in_channels, high=MAX_WIDTH)
        preset = {}
        if self.preset is not None:
            check_choice("preset", self.preset, tuple(PRESETS))
            preset = PRESETS[self.preset]
            for name in ("arch", "depth", "width", "stages"):
                given = getattr(self, name)
                # arch keeps a default value, so only a different non-default arch conflicts
                if name == "arch" and not _differs(given, ModelConfig.arch):
                    continue
                if given is not None and name in preset and _differs(given, preset[name]):
                    raise ValueError(
                        f"preset {self.preset!r} fixes {name}={preset[name]!r}; got {name}={given!r}. "
                        f"Leave {name} unset or drop the preset."
                    )
            object.__setattr__(self, "arch", preset["arch"])
        info = catalog.family(self.arch)  # an unknown family: a ValueError naming the known ones
        if self.norm is None:
            object.__setattr__(self, "norm", info.default_norm)
        if not catalog.accepts(self.arch, self.norm):
            raise ValueError(f"normalizer (norm) {self.norm!r} does not apply to arch {self.arch!r}; "
                             f"allowed: {choices(catalog.allowed_norms(self.arch))}")
        if info.tokens:
            if self.num_classes not in (None, VOCAB):
                raise ValueError(f"num_classes of arch {self.arch!r} is its vocabulary, {VOCAB} bytes; "
                                 f"got num_classes={self.num_classes!r}. Leave it unset.")
            object.__setattr__(self, "num_classes", VOCAB)
        if self.num_classes is None:
            object.__setattr__(self, "num_classes", preset.get("num_classes", DEFAULT_CLASSES))
        check_int("num_classes", self.num_classes, low=2, high=MAX_WIDTH)
        if self.depth is None:
            object.__setattr__(self, "depth", preset.get("depth", info.default_depth))
        if self.width is None:
            object.__setattr__(self, "width", preset.get("width", info.default_width))
        check_int("depth", self.depth, high=MAX_DEPTH)
        check_int("width", self.width, high=MAX_WIDTH)
        if info.residual:
            if self.stages is None:
                object.__setattr__(self, "stages", preset.get("stages", 1))
            check_int("stages", self.stages)
            if self.stages > MAX_STAGES:
                raise ValueError(f"stages must be between 1 and {MAX_STAGES}; got {self.stages}")
        elif self.stages is not None:
            raise ValueError(f"stages applies to arch {_residual()} only; got stages={self.stages!r} "
                             f"with arch {self.arch!r}")
        if not info.residual and (self.preact or self.skipinit):
            raise ValueError(f"preact and skipinit apply to arch {_residual()} only; got arch {self.arch!r}")
        if self.norm != "weightnorm":
            object.__setattr__(self, "wn_act", "after_add")  # canonical: the field is unused
        if info.tokens:
            if self.width % self.heads:
                raise ValueError(f"heads ({self.heads}) must divide the width ({self.width}); "
                                 f"allowed: {choices(divisors(self.width))}")
            if self.qk_norm and self.norm == "none":
                raise ValueError("qk_norm applies a normalizer to queries and keys; got norm 'none'. "
                                 "Choose a normalizer or leave qk_norm off.")
        self._resolve_groups()

    def _check_transformer_fields(self) -> None:
        """Refuse malformed transformer fields, and any non-default one on a family without tokens."""
        check_choice("placement", self.placement, PLACEMENTS)
        check_int("heads", self.heads, high=MAX_WIDTH)
        check_int("seq_len", self.seq_len, low=2, high=MAX_SEQ_LEN)
        for name in ("causal", "qk_norm", "ffn", "skip"):
            _check_bool(name, getattr(self, name))
        check_real("residual_scale", self.residual_scale, 0.0, open_low=True)
        # (an odd arch or preset is refused by name later; only a known family is checked here)
        preset = PRESETS.get(self.preset) if isinstance(self.preset, str) else None
        arch = preset["arch"] if preset else self.arch
        if isinstance(arch, str) and arch in catalog.ARCHITECTURES and not catalog.family(arch).tokens:
            for name in TRANSFORMER_FIELDS:
                value = getattr(self, name)
                if value != getattr(ModelConfig, name):
                    token_archs = " or ".join(repr(a) for a, i in catalog.ARCHITECTURES.items() if i.tokens)
                    raise ValueError(f"{name} applies to arch {token_archs} only; got {name}={value!r} "
                                     f"with arch {arch!r}")

    def _resolve_groups(self) -> None:
        # Malformed group settings are refused even where the normalizer ignores them.
        for name in ("groups", "group_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), high=MAX_WIDTH)
        if self.norm not in GROUPED_NORMS:
            # Canonical form, so configs that build the same network compare (and cache) equal.
            object.__setattr__(self, "groups", None)
            object.__setattr__(self, "group_size", None)
            return
        widths = self.widths
        if self.groups is not None and self.group_size is not None:
            raise ValueError(
                f"give groups or group_size, not both; got groups={self.groups}, "
                f"group_size={self.group_size}"
            )
        if self.group_size is not None:
            check_int("group_size", self.group_size)
            if self.group_size > min(widths):
                raise ValueError(
                    f"group_size {self.group_size} is larger than the width {min(widths)}; "
                    f"allowed: {choices(divisors(min(widths)))}"
                )
            bad = [w for w in widths if w % self.group_size]
            if bad:
                raise ValueError(
                    f"group_size {self.group_size} does not divide the width {bad[0]}; "
                    f"allowed: {choices(common_divisors(widths))}"
                )
            return
        if self.groups is None:
            object.__setattr__(self, "groups", math.gcd(DEFAULT_GROUPS, *widths))
        check_int("groups", self.groups)
        bad = [w for w in widths if w % self.groups]
        if bad:
            raise ValueError(
                f"Number of groups ({self.groups}) does not divide the width ({bad[0]}); "
                f"allowed: {choices(common_divisors(widths))}"
            )

    @property
    def paper_head(self) -> bool:
        """The classifier head keeps PyTorch's default nn.Linear init (the paper presets), else Kaiming."""
        return self.preset is not None

    def groups_at(self, channels: int) -> int | None:
        """Group count of a normalizer over ``channels``: fixed count, or channels / group size."""
        if self.norm not in GROUPED_NORMS:
            return None
        if self.group_size is not None:
            return channels // self.group_size
        return self.groups

    @property
    def residual(self) -> bool:
        """Whether the family has residual blocks (stages, preact, skipinit; the residual theory)."""
        return catalog.family(self.arch).residual

    @property
    def plan(self) -> tuple[tuple[int, int], ...]:
        """(width, stride) of every conv layer of a plain net, or of every block of a residual one."""
        if self.preset is not None and "plan" in PRESETS[self.preset]:
            return PRESETS[self.preset]["plan"]
        if self.residual:
            return tuple(
                (self.width * 2**s, 2 if (s > 0 and b == 0) else 1)
                for s in range(self.stages)
                for b in range(self.depth)
            )
        return ((self.width, 1),) * self.depth

    @property
    def widths(self) -> tuple[int, ...]:
        """Every distinct normalized width in the network, smallest first (without building the plan)."""
        if self.preset is not None and "plan" in PRESETS[self.preset]:
            return tuple(sorted({w for w, _ in PRESETS[self.preset]["plan"]}))
        if self.residual:
            return tuple(self.width * 2**s for s in range(self.stages))
        return (self.width,)

    def to_dict(self) -> dict:
        return asdict(self)


# The fields only a transformer reads, each refused by name elsewhere when not at its default.
TRANSFORMER_FIELDS = ("placement", "heads", "seq_len", "causal", "residual_scale", "qk_norm", "ffn", "skip")


def divisors(n: int) -> list[int]:
    """The divisors of n in increasing order, found in O(sqrt(n))."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def common_divisors(widths) -> list[int]:
    """Group counts (or group sizes) valid for every width in ``widths``."""
    widths = check_items("widths", widths)
    if not widths:
        raise ValueError("widths must list at least one width")
    for w in widths:
        check_int("widths", w, high=MAX_CHANNELS)
    return divisors(math.gcd(*widths))


def config_from_dict(cls, values: Mapping):
    """Build config class ``cls`` (ModelConfig, ProbeConfig, ...) from a mapping; unknown keys are refused."""
    if not (isinstance(cls, type) and is_dataclass(cls)):
        raise ValueError(f"cls must be a normlab config class such as ModelConfig; got {cls!r}")
    if not isinstance(values, Mapping):
        raise ValueError(f"values must be a mapping of {cls.__name__} field names to values; "
                         f"got {type(values).__name__}")
    odd = [k for k in values if not isinstance(k, str)]
    if odd:
        raise ValueError(f"values must map {cls.__name__} field names (strings) to values; "
                         f"got the key(s) {odd!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} field(s) {unknown} in values; "
                         f"expected some of {sorted(known)}")
    return cls(**values)


INPUTS = ("gaussian", "images", "digits")  # offline: what the package and its dependencies ship
# A token family's inputs (normlab.science.data.make_tokens): uniform random bytes, or byte windows of a
# text (text_path, else the English corpus every Python carries, pydoc_data.topics); nothing downloaded.
TOKEN_INPUTS = ("tokens", "text")
# Read from a local folder (data_dir, else $NORMLAB_DATA_DIR; normlab.science.datasets): never downloaded.
DISK_INPUTS = ("cifar10", "cifar100", "imagefolder")
# Images uploaded in the dashboard: held in this process's memory only
# (normlab.science.data.register_upload) and named by the content hash of the decoded batch, which
# ``data_dir`` carries as "upload:<sha256>".
UPLOAD_INPUT = "upload"
MAX_IMAGE_SIZE = 256


@dataclass(frozen=True)
class ProbeConfig:
    """How to probe a network at initialization: inputs, batch, seeds and device."""

    # one of INPUTS, DISK_INPUTS, TOKEN_INPUTS; None: the family's own (resolve_input): gaussian for the
    # image families (instance vs batch statistics only differ on real images), tokens for the transformer
    input: str | None = None
    batch_size: int = 64  # N: the rank of any N-sample representation is at most N
    image_size: int = 32  # H = W of the input images (CIFAR-sized by default)
    seed: int = 0  # first seed; seed k of a run is seed + k
    seeds: int = 1  # how many seeds (fresh init and fresh batch each)
    device: str = "auto"  # 'auto' takes CUDA, then MPS, then the CPU
    rank_tol: float = 1e-3  # numerical_rank counts singular values above rank_tol * sigma_max
    data_dir: str | None = None  # folder of a DISK_INPUTS input; None: $NORMLAB_DATA_DIR (read at probe time)
    text_path: str | None = None  # the text input's file (its bytes); None: the stdlib's pydoc_data corpus

    def __post_init__(self) -> None:
        if self.text_path is not None:
            if not isinstance(self.text_path, str) or not self.text_path.strip():
                raise ValueError(f"text_path must be a file path or None; got {self.text_path!r}")
            if self.input is None:
                object.__setattr__(self, "input", "text")  # a text file given means the text input
            elif self.input != "text":
                raise ValueError(f"text_path applies to input 'text' only; got input {self.input!r}")
        if self.input is not None:
            check_choice("input", self.input, INPUTS + DISK_INPUTS + (UPLOAD_INPUT,) + TOKEN_INPUTS)
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir.strip()):
            raise ValueError(f"data_dir must be a folder path or None; got {self.data_dir!r}")
        if self.input == UPLOAD_INPUT and not str(self.data_dir or "").startswith("upload:"):
            raise ValueError(f"data_dir of the upload input must name the batch as 'upload:<sha256>'; "
                             f"got {self.data_dir!r}")
        if self.input not in DISK_INPUTS + (UPLOAD_INPUT,):
            object.__setattr__(self, "data_dir", None)  # canonical: the offline inputs read no folder
        check_int("batch_size", self.batch_size, low=2, high=MAX_WIDTH)  # similarities need two samples
        check_int("image_size", self.image_size)
        if self.image_size > MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be between 1 and {MAX_IMAGE_SIZE}; got {self.image_size}")
        check_int("seed", self.seed, low=0, high=MAX_SEED)
        check_int("seeds", self.seeds, high=MAX_SEEDS)
        check_choice("device", self.device, DEVICES)
        if isinstance(self.rank_tol, bool) or not isinstance(self.rank_tol, (int, float)) or not (
            0 < self.rank_tol < 1
        ):
            raise ValueError(f"rank_tol must be a number between 0 and 1 (exclusive); got {self.rank_tol!r}")

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.seeds))

    def to_dict(self) -> dict:
        return asdict(self)


def _transformer_parts(model: ModelConfig) -> list[tuple[str, object]]:
    """A transformer's own fields for a label: placement, heads and tokens always, the rest when set."""
    if not catalog.family(model.arch).tokens:
        return []
    parts = [(k, getattr(model, k)) for k in ("placement", "heads", "seq_len")]
    return parts + [(k, getattr(model, k)) for k in TRANSFORMER_FIELDS[3:]
                    if getattr(model, k) != getattr(ModelConfig, k)]


def describe(model: ModelConfig, probe: ProbeConfig | None = None, *, short: bool = False) -> str:
    """One line naming a network (and how it is probed), for table headers and refusals.

    ``short``: the label of progress messages and refusals, 'resnet56 batchnorm' or
    'mlp groupnorm depth=20 width=256 groups=4'.
    """
    if short:
        parts = [model.preset or model.arch, model.norm]
        if model.preset is None:
            parts += [f"depth={model.depth}", f"width={model.width}"]
        parts += [f"{k}={getattr(model, k)}" for k in ("groups", "group_size")
                  if getattr(model, k) is not None]
        parts += [flag for flag in ("preact", "skipinit") if getattr(model, flag)]
        parts += [f"{k}={v}" for k, v in _transformer_parts(model)]
        text = " ".join(parts)
        return text if probe is None else f"{text} batch_size={probe.batch_size}"
    size = f"{model.preset} " if model.preset else ""
    parts = [f"{size}{model.arch}", model.norm, f"depth {model.depth}", f"width {model.width}"]
    parts += [f"{k} {getattr(model, k)}" for k in ("groups", "group_size", "stages")
              if getattr(model, k) is not None]
    parts += [k for k in ("preact", "skipinit") if getattr(model, k)]
    parts += [f"{k} {v}" for k, v in _transformer_parts(model)]
    text = ", ".join(parts)
    if probe is None:
        return text
    last = probe.seed + probe.seeds - 1
    seeds = f"seed {probe.seed}" if probe.seeds == 1 else f"seeds {probe.seed}..{last}"
    if catalog.family(model.arch).tokens:
        shape = f"{model.seq_len} tokens"
    else:
        shape = f"image {probe.image_size}"
    return f"{text} | {resolve_input(model, probe)}, batch {probe.batch_size}, {shape}, {seeds}"


def resolve_input(model: ModelConfig, probe: ProbeConfig) -> str:
    """The input a probe of ``model`` reads: ``probe.input``, else its family's default (tokens for a
    token family, gaussian otherwise). Token inputs for an image family, or images for a token
    family, are refused naming the inputs allowed."""
    check_instance("model_config", model, ModelConfig)
    check_instance("probe_config", probe, ProbeConfig)
    tokens = catalog.family(model.arch).tokens
    name = probe.input if probe.input is not None else (TOKEN_INPUTS[0] if tokens else INPUTS[0])
    allowed = TOKEN_INPUTS if tokens else INPUTS + DISK_INPUTS + (UPLOAD_INPUT,)
    if name not in allowed:
        raise ValueError(f"input {name!r} does not apply to arch {model.arch!r}; allowed: {choices(allowed)}")
    return name
