"""What a choice costs before it runs: the very prediction the server's admission uses, in one line.

The seconds come from normlab.ops.budget's cost model, calibrated on this server for the torch threads
each computation gets (``server_limits().threads``), so the caption and the refusal never disagree.
No Streamlit here; the caption speaks the current language (``ui.state.i18n``).
"""

from __future__ import annotations

from collections.abc import Sequence

from normlab import ModelConfig, ProbeConfig
from normlab.ops.calibration import predicted_seconds
from normlab.ops.cost import estimate_cost
from normlab.ops.settings import Limits, server_limits
from ui.state.i18n import _, ngettext


def _limits() -> Limits:
    try:
        return server_limits()
    except ValueError:  # a malformed setting is reported where the server checks a request
        return Limits()


def cost_summary(models: Sequence[ModelConfig], probe: ProbeConfig) -> str:
    """One line for the sidebar: compute, memory and the predicted time of a fresh run, with the limit."""
    costs = [estimate_cost(m, probe) for m in models]
    gflop = sum(c.gflop for c in costs)
    memory = max(c.memory_mb for c in costs)
    limits = _limits()
    seconds = sum(predicted_seconds(c, limits) for c in costs)
    shown = f"{seconds:.1f}" if seconds < 100 else f"{seconds:,.0f}"
    networks = ngettext("{count} network", "{count} networks", len(models)).format(count=len(models))
    seeds = ngettext("{count} seed", "{count} seeds", probe.seeds).format(count=probe.seeds)
    return _("Cost of a fresh run: {networks} × {seeds} · {gflop} GFLOP · peak {memory} MiB · predicted "
             "{seconds} s here, limit {limit} s (results are cached: seen configs redraw at once)").format(
        networks=networks, seeds=seeds, gflop=f"{gflop:.2g}", memory=f"{memory:.0f}", seconds=shown,
        limit=f"{limits.max_seconds:g}")
