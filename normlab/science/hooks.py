"""Scoped recording at named modules: ``with record(model, points) as taps: ...``.

Forward hooks reduce each activation to what the caller needs the moment it is produced (by default a
detached copy; the probes keep only O(N^2) statistics), and tensor hooks on conv/linear outputs keep
the Frobenius norm of dL/dz. Every handle is removed when the block exits, also when the forward or
backward pass raises. Knows nothing of the metrics or of frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

GRAD = "conv"  # the kind whose outputs get gradient hooks instead of a forward reduction


@dataclass
class Tap:
    """One module call seen by :func:`record`.

    ``name`` is the module's name; a module called more than once in a forward pass (a shared ReLU)
    gets ``name#k`` for its k-th extra call. ``index`` is the tap's position among taps of the same
    kind, in the order the forward pass reached them.
    """

    name: str
    kind: str
    index: int
    value: object = None  # reduce(output) for activation taps
    grad_norm: torch.Tensor | None = None  # () float64 |dL/dz|_F for conv taps, once backward reached it
    grad_finite: torch.Tensor | None = None  # () bool: dL/dz was finite
    final: bool = False  # the output is the network's final representation


@dataclass
class Taps:
    """What a :func:`record` block saw, in forward order."""

    taps: list[Tap] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Tap]:
        return [t for t in self.taps if t.kind == kind]

    @property
    def final(self) -> Tap | None:
        return next((t for t in self.taps if t.final), None)


def _first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


def _keep(output: torch.Tensor, kind: str) -> torch.Tensor:
    return output.detach().clone()


def _frobenius64(grad: torch.Tensor) -> torch.Tensor:
    if grad.device.type == "mps":  # no float64 there
        grad = grad.cpu()
    return torch.linalg.vector_norm(grad, dtype=torch.float64)


@contextmanager
def record(
    model: nn.Module,
    points: Iterable[tuple[str, str, nn.Module]] | None = None,
    *,
    reduce: Callable[[torch.Tensor, str], object] = _keep,
    grad_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    final: nn.Module | None = None,
) -> Iterator[Taps]:
    """Record the outputs of ``points`` while the block runs.

    Args:
        model: the network; its ``probe_points()`` are the default points and its ``final`` module
            the default final representation.
        points: (name, kind, module) triples. Kind ``"conv"`` records |dL/dz|_F at the module's output
            during backward; every other kind records ``reduce(output)`` during forward.
        reduce: ``reduce(output, kind)`` maps a floating-point output tensor to what is kept; it runs
            inside the hook, so only its result outlives the forward pass.
        grad_reduce: maps dL/dz to the 0-dim float64 tensor kept as ``grad_norm``; default its
            Frobenius norm computed in float64.
        final: the module whose output is the final representation: the tap that produced that
            tensor is marked ``final`` (a tap is added for it when none did).

    Yields:
        A :class:`Taps` that fills as forward and backward passes run.
    """
    if points is None:
        points = model.probe_points()
    if final is None:
        final = getattr(model, "final", None)
    taps = Taps()
    handles: list = []
    counts: dict[str, int] = {}  # taps so far per kind
    calls: dict[int, int] = {}  # calls so far per module
    # (tensor, its version, tap) of the latest activation tap, to find the tap that made the final
    # output; the version catches an in-place op (ReLU(inplace=True)) that changed it since.
    last: list = [None, -1, None]

    def new_tap(name: str, kind: str, module: nn.Module) -> Tap:
        k = calls.get(id(module), 0)
        calls[id(module)] = k + 1
        tap = Tap(name if k == 0 else f"{name}#{k}", kind, counts.get(kind, 0))
        counts[kind] = tap.index + 1
        taps.taps.append(tap)
        return tap

    def activation_hook(name: str, kind: str):
        def hook(module, args, output):
            out = _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            tap = new_tap(name, kind, module)
            tap.value = reduce(out, kind)
            last[:] = [out, out._version, tap]

        return hook

    def grad_hook(name: str, kind: str):
        def hook(module, args, output):
            out = _first_tensor(output)
            if out is None or not out.is_floating_point() or not out.requires_grad:
                return
            tap = new_tap(name, kind, module)

            def on_grad(grad: torch.Tensor) -> None:
                with torch.no_grad():
                    tap.grad_norm = (grad_reduce or _frobenius64)(grad.detach())
                    # float64 sums of float32 squares cannot overflow: a non-finite norm means a
                    # non-finite gradient entry
                    tap.grad_finite = torch.isfinite(tap.grad_norm)

            handles.append(out.register_hook(on_grad))

        return hook

    def final_hook(module, args, output):
        out = _first_tensor(output)
        if out is None or not out.is_floating_point():
            return
        if out is not last[0] or out._version != last[1]:  # no point made it: tap the final module
            activation_hook(_module_name(model, module), "act")(module, args, output)
        for t in taps.taps:
            t.final = False
        last[2].final = True

    try:
        for name, kind, module in points:
            make = grad_hook if kind == GRAD else activation_hook
            handles.append(module.register_forward_hook(make(name, kind)))
        if final is not None:
            # registered last, so it runs after the final module's own point hook
            handles.append(final.register_forward_hook(final_hook))
        yield taps
    finally:
        for handle in handles:
            handle.remove()
        last[:] = [None, -1, None]


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)
