"""The dashboard's controls as one table: key, default and allowed values, shared by widgets and links.

Every control's widget key is also its URL query parameter, so a link can hold the whole view and
``parse_params`` can check a link before anything is drawn. Pure Python: no Streamlit here; the
notices are phrased in the current language (``ui.state.i18n``), the labels marked for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from normlab import INPUTS, NORM_NAMES, PRESETS, ModelConfig
from normlab.core import catalog
from normlab.core.config import (
    DEVICES,
    PLACEMENTS,
    TOKEN_INPUTS,
    WN_ACT_PLACEMENTS,
    common_divisors,
    divisors,
)
from ui.state.i18n import DEFAULT as DEFAULT_LANG
from ui.state.i18n import LANGUAGES, N_, _


class _Nets(Sequence):
    """The network menu, read from the catalog when used: the image families with free sizes (the
    residual one first, as the dashboard opens on it; a family registered later is offered too), the
    token families (the transformer), then the paper's presets with fixed sizes."""

    def _items(self) -> tuple[str, ...]:
        images = [a for a in catalog.ARCH_NAMES if not catalog.ARCHITECTURES[a].tokens]
        tokens = [a for a in catalog.ARCH_NAMES if catalog.ARCHITECTURES[a].tokens]
        return (*reversed(images), *tokens, *PRESETS)

    def __getitem__(self, index):
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


NETS = _Nets()
# The dashboard's normalizer menus: every normalizer of the catalog is a valid link value; the sidebar
# offers the network's own (catalog.allowed_norms), and a link's pair that does not fit is refused by name.
DASHBOARD_NORMS = tuple(NORM_NAMES)
# What a family opens with when the normalizers chosen before do not apply to it.
FAMILY_NORMS = {"transformer": ("layernorm", "rmsnorm", "dyt")}
PRESET_LABELS = {"resnet56": N_("ResNet-56 (paper)"), "vgg10": N_("VGG-10 (paper)"),
                 "vgg20": N_("VGG-20 (paper)")}


def net_labels() -> Callable[[object], str]:
    """``format_func`` of the network menu: each family's menu entry, each preset's name."""
    return labelled({**{name: info.menu for name, info in catalog.ARCHITECTURES.items()}, **PRESET_LABELS})
# What the menus show for option values that are words (the values themselves stay the link's).
INPUT_LABELS = {"gaussian": N_("gaussian"), "images": N_("images"), "digits": N_("digits")}
DEVICE_LABELS = {"auto": N_("auto")}
WIDTHS = (4, 8, 16, 32, 64, 128, 256, 512)
BATCHES = (4, 8, 16, 32, 64, 128, 256)
IMAGE_SIZES = (8, 16, 32, 64)
RANK_TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# The sidebar's ranges: what a slider offers, far below the engine's ceilings (normlab.core.config)
SLIDER_MAX_DEPTH = 320  # deep enough for an unnormalized ResNet to overflow float32 (~270 blocks)
# The depth slider's stops: roughly logarithmic, so 8 sits near the middle rather than at the far left
# of 1..320 (a link's depth outside this list is added to it, so every depth stays reachable).
DEPTHS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256,
          SLIDER_MAX_DEPTH)
SLIDER_MAX_STAGES = 4
SLIDER_MAX_SEEDS = 8
SLIDER_MAX_SEED = 10_000
GROUP_BY = ("groups", "group_size")
SCALES = ("log", "linear")
SCALE_LABELS = {"log": N_("log"), "linear": N_("linear")}
# The transformer's controls (spec section 5): what each placement means, tokens per sequence, and the
# residual branch's scale as a rule of the depth L (a link holds the rule, the config its number).
PLACEMENT_LABELS = {"post": N_("post-LN: x ← Norm(x + F(x))"), "pre": N_("pre-LN: x ← x + F(Norm(x))"),
                    "peri": N_("peri-LN: x ← x + Norm(F(Norm(x)))"),
                    "mix": N_("Mix-LN: post for the first ⌈L/4⌉ blocks, pre after"),
                    "lns": N_("LayerNorm Scaling: x ← x + F(Norm(x)/√ℓ)")}
PLACEMENT_NAMES = {"post": "Post-LN", "pre": "Pre-LN", "peri": "Peri-LN", "mix": "Mix-LN",
                   "lns": N_("LN Scaling")}  # short names, where a menu lists several placements
SEQ_LENS = (8, 16, 32, 64, 128, 256)

TOKEN_LABELS = {"tokens": N_("random bytes"), "text": N_("English text (Python's help topics)")}
RESIDUAL_SCALES = {"1": lambda depth: 1.0, "1/sqrt(L)": lambda depth: depth ** -0.5,
                   "1/L": lambda depth: 1.0 / depth}
RESIDUAL_SCALE_LABELS = {"1": "1", "1/sqrt(L)": "1/√L", "1/L": "1/L"}


@dataclass(frozen=True)
class Control:
    """One control: its key (widget key and URL parameter), its default and what it accepts."""

    key: str
    default: object
    kind: str  # "choice", "choices" (several, comma-separated in a URL), "int", "bool", "float"
    choices: tuple = ()  # allowed values of a choice / choices / float control
    low: int = 0  # bounds of an int control
    high: int = 0
    page: str | None = None  # a page's own plot option (None: a sidebar control)


# Defaults are sized so one control change redraws in about a second on a 2-core CPU (measured: see
# benchmarks/ui_latency.py): a ResNet of 8 blocks of width 16, batch 32 of 16x16 images, one seed.
CONTROLS: tuple[Control, ...] = (
    Control("net", "resnet", "choice", NETS),
    Control("norms", ("batchnorm", "groupnorm", "none"), "choices", DASHBOARD_NORMS),
    Control("group_by", "groups", "choice", GROUP_BY),
    Control("groups", 4, "int", low=1, high=max(WIDTHS)),
    Control("group_size", 4, "int", low=1, high=max(WIDTHS)),
    Control("depth", catalog.family("resnet").default_depth, "int", low=1, high=SLIDER_MAX_DEPTH),
    Control("width", catalog.family("resnet").default_width, "choice", WIDTHS),
    Control("stages", 1, "int", low=1, high=SLIDER_MAX_STAGES),
    Control("preact", False, "bool"),
    Control("skipinit", False, "bool"),
    Control("wn_act", WN_ACT_PLACEMENTS[0], "choice", WN_ACT_PLACEMENTS),
    # The transformer's own (ModelConfig's defaults): hidden, and never sent to the engine, elsewhere.
    Control("placement", ModelConfig.placement, "choice", PLACEMENTS),
    Control("heads", ModelConfig.heads, "int", low=1, high=max(WIDTHS)),
    Control("seq_len", ModelConfig.seq_len, "choice", SEQ_LENS),
    Control("tokens", TOKEN_INPUTS[0], "choice", TOKEN_INPUTS),
    Control("causal", ModelConfig.causal, "bool"),
    Control("residual_scale", "1", "choice", tuple(RESIDUAL_SCALES)),
    Control("qk_norm", ModelConfig.qk_norm, "bool"),
    Control("ffn", ModelConfig.ffn, "bool"),
    Control("skip", ModelConfig.skip, "bool"),
    Control("input", "gaussian", "choice", INPUTS),
    Control("batch", 32, "choice", BATCHES),
    Control("image", 16, "choice", IMAGE_SIZES),
    Control("seeds", 1, "int", low=1, high=SLIDER_MAX_SEEDS),
    Control("seed", 0, "int", low=0, high=SLIDER_MAX_SEED),
    Control("device", DEVICES[0], "choice", DEVICES),
    Control("rank_tol", 1e-3, "float", RANK_TOLS),
    Control("lang", DEFAULT_LANG, "choice", LANGUAGES),
    Control("lecture", False, "bool"),
    Control("claim", 0, "int", low=0, high=99),
    # Plot-only options of the pages: they never enter an engine call, so changing them only redraws.
    Control("var_metric", "act_var", "choice", ("act_var", "act_sq_mean", "res_var"), page="variance"),
    Control("var_scale", "log", "choice", SCALES, page="variance"),
    Control("var_theory", True, "bool", page="variance"),
    Control("spec_scale", "log", "choice", SCALES, page="rank"),
    Control("grad_scale", "log", "choice", SCALES, page="gradients"),
    Control("sweep_norm", "groupnorm", "choice", ("groupnorm", "evonorm_s0"), page="groups"),
    Control("sweep_scale", "log", "choice", SCALES, page="groups"),
    Control("pl_placements", PLACEMENTS, "choices", PLACEMENTS, page="placement"),
    Control("pl_norms", ("layernorm",), "choices", tuple(catalog.allowed_norms("transformer")),
            page="placement"),
    Control("pl_theory", True, "bool", page="placement"),
)
BY_KEY = {c.key: c for c in CONTROLS}
DEFAULTS = {c.key: c.default for c in CONTROLS}
# Every control also reads the page from a link; "page" is handled by the app's navigation.
PAGE_PARAM = "page"


def labelled(labels: Mapping[object, str]) -> Callable[[object], str]:
    """A widget's ``format_func``: each option's label (marked with N_) in the session's language.

    The labels are translated now, while the page runs: Streamlit may call the function later, outside
    the session (AppTest does), where it would no longer know the language.
    """
    shown = {value: _(label) for value, label in labels.items()}
    return lambda value: shown.get(value, str(value))


def normalizer_labels() -> Callable[[object], str]:
    """``format_func`` of a normalizer menu: the layers' names ("No normalization" translated)."""
    return labelled({name: catalog.NORM_INFO[name].label for name in NORM_NAMES})


def _parse(control: Control, text: str):
    """One URL value -> the control's value; ValueError says what was wrong and what is allowed."""
    said = {"key": control.key, "value": repr(text), "allowed": ", ".join(map(str, control.choices))}
    if control.kind == "choice":
        for choice in control.choices:
            if text == str(choice):
                return choice
        raise ValueError(_("{key}={value} is not one of {allowed}").format(**said))
    if control.kind == "choices":
        values = tuple(v for v in text.split(",") if v)
        bad = [v for v in values if v not in control.choices]
        if not values:
            raise ValueError(_("{key}={value}: unknown empty list; allowed: {allowed}").format(**said))
        if bad:
            raise ValueError(_("{key}={value}: unknown {names}; allowed: {allowed}").format(
                names=", ".join(bad), **said))
        return tuple(dict.fromkeys(values))  # drop repeats, keep the order
    if control.kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(_("{key}={value} is not true/false (1/0)").format(**said))
    if control.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(_("{key}={value} is not a number").format(**said)) from None
        for choice in control.choices:
            if abs(value - choice) <= 1e-12 * choice:
                return choice
        raise ValueError(_("{key}={value} is not one of {allowed}").format(**said))
    try:
        value = int(text)
    except ValueError:
        raise ValueError(_("{key}={value} is not a whole number").format(**said)) from None
    if not control.low <= value <= control.high:
        raise ValueError(_("{key}={value} is outside {low}..{high}").format(
            key=control.key, value=value, low=control.low, high=control.high))
    return value


def format_value(control: Control, value) -> str:
    """A control's value as it appears in a URL."""
    if control.kind == "choices":
        return ",".join(value)
    if control.kind == "bool":
        return "1" if value else "0"
    return str(value)


def parse_params(params: Mapping[str, str]) -> tuple[dict, list[str]]:
    """Read a link's query parameters into control values.

    Unknown parameters and values a control does not accept are left out (the control keeps its default)
    and described in the returned notices, so a stale or mistyped link still opens.

    Returns:
        (values by control key, notices naming every parameter that was dropped and why)
    """
    values, notices = {}, []
    for key, raw in params.items():
        if key == PAGE_PARAM:
            continue
        if key not in BY_KEY:
            notices.append(_("unknown parameter {key}").format(key=repr(key)))
            continue
        control = BY_KEY[key]
        texts = raw if isinstance(raw, list) else [raw]
        # A repeated parameter lists several values for a multi-choice control; elsewhere the last wins.
        text = ",".join(map(str, texts)) if control.kind == "choices" else str(texts[-1])
        try:
            values[key] = _parse(control, text)
        except ValueError as err:
            notices.append(str(err))
    return values, notices


def to_params(values: Mapping[str, object], page: str | None = None) -> dict[str, str]:
    """Control values -> query parameters; only values that differ from the defaults, for short links."""
    params = {}
    if page:
        params[PAGE_PARAM] = page
    for control in CONTROLS:
        if control.key in values and values[control.key] != control.default:
            params[control.key] = format_value(control, values[control.key])
    return params


def family_of(net: str) -> catalog.ArchInfo:
    """The architecture family of a network menu entry (a preset's family for a preset)."""
    return catalog.family(PRESETS[net]["arch"] if net in PRESETS else net)


def is_residual(net: str) -> bool:
    """Whether the menu entry builds a residual net (stages, pre-activation, SkipInit apply)."""
    return family_of(net).residual


def network_fields(net: str) -> dict:
    """ModelConfig fields that the network menu entry fixes: a preset, or just the family."""
    return {"preset": net} if net in PRESETS else {"arch": net}


def is_transformer(net: str) -> bool:
    """Whether the menu entry builds a token model (placement, heads, tokens and its options apply)."""
    return family_of(net).tokens


def offered_norms(net: str) -> tuple[str, ...]:
    """The normalizers the menu offers for a network: those its family builds with, in the menu's order."""
    allowed = catalog.allowed_norms(family_of(net).name)
    return tuple(n for n in DASHBOARD_NORMS if n in allowed)


def norms_for(net: str, norms) -> tuple[str, ...]:
    """The chosen normalizers that the network takes; where some do not apply and the family has an
    opening choice of its own (the transformer), that choice."""
    offered = offered_norms(net)
    kept = tuple(n for n in norms if n in offered)
    opening = FAMILY_NORMS.get(family_of(net).name)
    if kept and (len(kept) == len(tuple(norms)) or opening is None):
        return kept
    return opening or tuple(n for n in DEFAULTS["norms"] if n in offered) or offered[:1]


def head_choices(width: int) -> list[int]:
    """Head counts a transformer of this width takes: the divisors of the width."""
    return divisors(int(width))


def transformer_fields(values: Mapping[str, object]) -> dict:
    """The transformer's ModelConfig fields from control values (the residual scale's rule applied)."""
    depth = int(values["depth"])
    rule = values["residual_scale"]
    if rule not in RESIDUAL_SCALES:
        raise ValueError(_("residual_scale={value} is not one of {allowed}").format(
            value=repr(rule), allowed=", ".join(RESIDUAL_SCALES)))
    return {"placement": values["placement"], "heads": int(values["heads"]),
            "seq_len": int(values["seq_len"]), "causal": bool(values["causal"]),
            "residual_scale": RESIDUAL_SCALES[rule](depth), "qk_norm": bool(values["qk_norm"]),
            "ffn": bool(values["ffn"]), "skip": bool(values["skip"])}


def group_choices(net: str, width: int, stages: int) -> list[int]:
    """Group counts (and group sizes) valid for every normalized width of the network."""
    sizes = {} if net in PRESETS else {"width": width, **({"stages": stages} if is_residual(net) else {})}
    accepted = family_of(net).norms or ("none",)  # the widths do not depend on the normalizer
    norm = "none" if "none" in accepted else accepted[0]
    probe_net = ModelConfig(**network_fields(net), **sizes, norm=norm)
    return common_divisors(probe_net.widths)


def middle_choice(options: list[int]) -> int:
    """The middle option: a group count between LayerNorm (1) and InstanceNorm (one channel per group)."""
    return options[len(options) // 2]
