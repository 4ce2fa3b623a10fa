"""How frames leave normlab: CSV, JSON and aligned text, with one rule for numbers that are not finite.

The rule, the same for ``probe``, ``sweep``, ``train`` and ``study`` (and the dashboard's downloads):

* a number that is not finite is written as text: ``nan``, ``inf`` or ``-inf``, in CSV and in JSON
  (strict JSON has no such numbers, and writing them all as null would hide an overflow to inf behind
  the same mark as an undefined value). ``pd.read_csv`` reads them back as floats.
* a value that is absent is empty in CSV and ``null`` in JSON: ``None``, or NaN in a config column
  (a ModelConfig/ProbeConfig field that does not apply, e.g. ``groups`` of BatchNorm, which pandas
  stores as NaN once a column mixes numbers and None).

Knows nothing of torch, the CLI's flags or the UI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import sys

import numpy as np
import pandas as pd

from normlab.core.config import ModelConfig, ProbeConfig

# Columns whose NaN means "does not apply", not "not a number".
CONFIG_COLUMNS = frozenset(f.name for cls in (ModelConfig, ProbeConfig) for f in dataclasses.fields(cls))


def non_finite_text(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def cell(value, column: str):
    """One value as JSON holds it, under the rule above."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None if column in CONFIG_COLUMNS and math.isnan(value) else non_finite_text(value)
    return value


def to_json(frame: pd.DataFrame) -> str:
    """Records as strict JSON: non-finite numbers as "nan"/"inf"/"-inf", absent values null."""
    records = [{col: cell(val, col) for col, val in row.items()} for row in frame.to_dict(orient="records")]
    return json.dumps(records, indent=1) + "\n"


def to_csv(frame: pd.DataFrame) -> str:
    """CSV: non-finite numbers as nan/inf/-inf, absent values empty."""
    columns = {}
    for col in frame.columns:
        if col in CONFIG_COLUMNS:
            continue  # NaN there is absent: empty
        values = frame[col]
        if pd.api.types.is_float_dtype(values):
            nan = values.isna()
        elif values.dtype == object:
            nan = values.map(lambda v: isinstance(v, float) and math.isnan(v)).astype(bool)
        else:
            continue
        if nan.any():
            columns[col] = values.astype(object).where(~nan, "nan")
    return frame.assign(**columns).to_csv(index=False)


def to_table(frame: pd.DataFrame) -> str:
    """Aligned text, four significant digits; non-finite numbers as nan/inf/-inf."""
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}") + "\n"


def frame_text(frame: pd.DataFrame, fmt: str) -> str:
    """``frame`` as ``csv``, ``json`` or ``table``."""
    if fmt == "json":
        return to_json(frame)
    if fmt == "table":
        return to_table(frame)
    if fmt == "csv":
        return to_csv(frame)
    raise ValueError(f"Unknown format {fmt!r}; expected one of 'csv', 'json', 'table'")


def check_out(out: str | None) -> None:
    """Refuse an --out path that cannot be written, before any work is done.

    Only a regular file (new or existing) in an existing, writable folder is accepted. The path is
    looked at with ``os.stat``, never opened, so a FIFO cannot block and a device is not touched.
    """
    if out is None:
        return
    if not out.strip():
        raise ValueError("--out must name a file; got ''")
    path = os.path.abspath(out)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise ValueError(f"cannot write --out {out!r}: {err.strerror or err}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise ValueError(f"cannot write --out {out!r}: it is a folder")
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"cannot write --out {out!r}: not a regular file (a FIFO, device or socket)")
        try:  # a regular file opens at once; appending nothing leaves it as it was
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        except OSError as err:
            raise ValueError(f"cannot write --out {out!r}: {err.strerror or err}") from None
        return
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write --out {out!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write --out {out!r}: folder {folder!r} is not writable")


def write(text: str, out: str | None) -> None:
    """``text`` to the file ``out``, or to stdout when it is None."""
    if out is None:
        sys.stdout.write(text)
        return
    try:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise ValueError(f"cannot write --out {out!r}: {err.strerror or err}") from None
