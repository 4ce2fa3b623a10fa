"""Results that persist: one Parquet record per computation, keyed by its configs and the engine version.

A record is the tidy frame a computation returned (a probe, a sweep point, a training run), written once
under ``<root>/kind=<kind>/key=<hash>/part-0.parquet`` (hive partitioning, so ``pyarrow.dataset`` reads the
whole store as one table), with the configs and the engine version in the file's metadata. The key hashes
the configs *and* ``ENGINE_VERSION``, so a change that alters the numbers never reuses stale records.

The dashboard, ``python -m ui.warm`` and the sweeps (local or distributed) all read and write this one store:
identical requests from every session, process and machine sharing the folder are computed once.
Writes are atomic (a hidden temporary file renamed into place), so a crash leaves no half record and
two writers of one key leave one whole file. A folder this process cannot write (a root-owned bind
mount, a read-only file system) is found on its first check (``ResultStore.writable``) and logged once
with the fix; the best-effort writers (normlab.ops.records) then write nothing more there. Knows nothing
of torch or of the UI.

Environment:

    NORMLAB_STORE   the store's folder (default ``~/.cache/normlab/results``); ``off`` disables it
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from normlab.core.version import ENGINE_VERSION

ENV_VAR = "NORMLAB_STORE"
DEFAULT_ROOT = Path("~/.cache/normlab/results")
FILE_NAME = "part-0.parquet"
_META_KEY = b"normlab"  # the record's kind, configs and engine version, as JSON in the Parquet metadata
KEY_LENGTH = 24  # hex digits of sha256: 96 bits, no collision among any number of records one could store
# Errors that mean "this process may not write here" rather than a fault: said once, not per write.
_REFUSALS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)

log = logging.getLogger(__name__)
# Each folder's write problem (None: writable), tried once per process: the dashboard asks on every lookup.
_problems: dict[Path, str | None] = {}
_problems_lock = threading.Lock()


if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def _arrow():
    """pyarrow and its Parquet module, loaded with the first record read or written (about a second of
    imports the command line's --help need not wait for)."""
    import pyarrow
    import pyarrow.parquet

    return pyarrow, pyarrow.parquet


def _plain(value: Any) -> Any:
    """A config (or any value in one) as JSON-ready plain data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return _plain(to_dict() if to_dict else dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def describe(kind: str, *configs: Any, engine_version: str | None = None) -> dict:
    """What a record is: its kind, its configs as plain data and the engine version (default: this one)."""
    engine_version = ENGINE_VERSION if engine_version is None else engine_version  # read now, not at import
    if not kind or not all(c.isalnum() or c in "-_" for c in kind):
        raise ValueError(f"record kind must be letters, digits, '-' or '_'; got {kind!r}")
    return {"kind": kind, "configs": [_plain(c) for c in configs], "engine_version": engine_version}


def record_key(kind: str, *configs: Any, engine_version: str | None = None) -> str:
    """The key of a computation: a hash of its kind, its configs and the engine version."""
    text = json.dumps(describe(kind, *configs, engine_version=engine_version), sort_keys=True,
                      separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


class ResultStore:
    """A folder of Parquet records, one per key.

    Args:
        root: the folder; created on the first write.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def write_problem(self) -> str | None:
        """Why records cannot be written here, with the fix; None when they can.

        Tried for real once per folder and process: the folder is made and a hidden file written and
        removed there (permission bits say nothing of read-only mounts, nor to root). Logs nothing.
        """
        with _problems_lock:
            if self.root not in _problems:
                _problems[self.root] = _try_writing(self.root)
            return _problems[self.root]

    def writable(self) -> bool:
        """Whether records can be written here (``write_problem``); the first time a folder cannot, the
        reason and the fix are logged once (WARNING) for this process."""
        problem = self.write_problem()
        if problem is not None:
            _say_once(self.root, problem)
        return problem is None

    def refused(self, err: OSError) -> bool:
        """Whether ``err``, met reading or writing here, means this process may not write the folder (or a
        folder in it). If so the store is marked unwritable and the fix logged once, without a traceback.
        """
        if err.errno not in _REFUSALS:
            return False
        with _problems_lock:
            problem = _problems.get(self.root) or _advice(self.root, err)
            _problems[self.root] = problem
        _say_once(self.root, problem)
        return True

    def path(self, kind: str, key: str) -> Path:
        if not (len(key) == KEY_LENGTH and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"record key must be {KEY_LENGTH} lowercase hex digits; got {key!r}")
        describe(kind)  # checks the kind's spelling
        return self.root / f"kind={kind}" / f"key={key}" / FILE_NAME

    def has(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_file()

    def get(self, kind: str, key: str) -> pd.DataFrame | None:
        """The record's frame; None when it was never written (or another engine version wrote it)."""
        path = self.path(kind, key)
        _, pq = _arrow()
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            return None
        meta = _meta(table.schema)
        if meta.get("engine_version") != ENGINE_VERSION:
            return None  # a key collision across versions cannot happen; a hand-copied file can
        return table.to_pandas()

    def put(self, kind: str, key: str, frame: pd.DataFrame, description: dict | None = None) -> Path:
        """Write a record atomically; the description (see :func:`describe`) goes into its metadata."""
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        pa, pq = _arrow()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = {**(description or {"kind": kind}), "key": key, "engine_version": ENGINE_VERSION}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               _META_KEY: json.dumps(meta, allow_nan=True).encode()})
        tmp = path.parent / f".{uuid.uuid4().hex}.tmp"  # hidden: dataset readers skip it
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def put_frames(self, kind: str, key: str, frames: Mapping[str, pd.DataFrame],
                   description: dict | None = None) -> Path:
        """Write a record of several frames: the first is the record, the others lie beside it.

        The others go to ``_<name>.parquet`` in the record's folder (dataset readers skip names
        starting with '_', so the kind still reads as one table of main frames), each atomically and
        before the main frame: a record that exists is whole.
        """
        pa, pq = _arrow()
        (main, first), *others = frames.items()
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        for name, frame in others:
            assert name.isidentifier() and name != main, f"side frame name {name!r}"
            tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
            try:
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
                os.replace(tmp, path.parent / f"_{name}.parquet")
            finally:
                tmp.unlink(missing_ok=True)
        return self.put(kind, key, first, description)

    def get_frames(self, kind: str, key: str, names: Sequence[str]) -> dict[str, pd.DataFrame] | None:
        """A record written by :meth:`put_frames` with ``names`` (the record's own first), as frames.

        None when the record is absent, of another engine version, or lacks one of ``names``.
        """
        main = self.get(kind, key)
        if main is None:
            return None
        _, pq = _arrow()
        out = {names[0]: main}
        for name in names[1:]:
            try:
                out[name] = pq.read_table(self.path(kind, key).parent / f"_{name}.parquet").to_pandas()
            except FileNotFoundError:
                return None
        return out

    def keys(self, kind: str) -> set[str]:
        """Keys of every record of ``kind`` in the store."""
        folder = self.root / f"kind={kind}"
        if not folder.is_dir():
            return set()
        return {p.parent.name.removeprefix("key=") for p in folder.glob(f"key=*/{FILE_NAME}")}

    def records(self, kind: str) -> Iterator[tuple[str, dict]]:
        """(key, description) of every record of ``kind`` written by this engine version."""
        for key in sorted(self.keys(kind)):
            meta = _meta(_arrow()[1].read_schema(self.path(kind, key)))
            if meta.get("engine_version") == ENGINE_VERSION:
                yield key, meta

    def read(self, kind: str, keys: set[str] | None = None) -> pd.DataFrame:
        """Every record of ``kind`` (or those in ``keys``) of this engine version; a ``key`` column added."""
        frames = []
        for key, _ in self.records(kind):
            if keys is None or key in keys:
                frame = self.get(kind, key)
                if frame is not None:
                    frames.append(frame.assign(key=key))
        import pandas as pd

        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


_said: set[Path] = set()


def _say_once(root: Path, problem: str) -> None:
    with _problems_lock:
        if root in _said:
            return
        _said.add(root)
    log.warning(problem)


def _try_writing(root: Path) -> str | None:
    """None when a file can be made in ``root`` (made first if need be), else why not and the fix."""
    probe = root / f".{uuid.uuid4().hex}.tmp"  # hidden: dataset readers skip it
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return _advice(root, err)
    return None


def _owner(path: Path) -> int | None:
    """The uid owning ``path`` or, when it does not exist, its nearest existing parent."""
    for folder in (path, *path.parents):
        try:
            return folder.stat().st_uid
        except OSError:
            continue
    return None


def _advice(root: Path, err: OSError) -> str:
    """What an operator reads once: what failed, what it costs, whose folder it is, and the fix."""
    me = os.geteuid() if hasattr(os, "geteuid") else None  # POSIX only
    owner = _owner(root)
    whose = (f" It belongs to uid {owner}, and this process runs as uid {me}."
             if None not in (me, owner) and owner != me else "")
    uid = "UID" if me is None else me
    return (f"the result store {root} cannot be written ({err.strerror or err}): results are kept in this "
            f"process's memory only, and computed again after a restart.{whose} Fix: mount a named volume "
            f"there (docker run -v normlab-results:{root} ...; a new volume starts with the image's warmed "
            f"records, which a bind mount hides), or give the host folder to this user (chown -R "
            f"{uid}:{uid} HOST_FOLDER). NORMLAB_STORE=off keeps results in memory without this warning.")


def _meta(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(_META_KEY)
    return json.loads(raw) if raw else {}


def default_store(environ: Mapping[str, str] | None = None) -> ResultStore | None:
    """The store named by ``NORMLAB_STORE`` (default ``~/.cache/normlab/results``); None if ``off``."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV_VAR, "").strip()
    if raw.lower() in ("off", "none", "0", "false"):
        return None
    return ResultStore(raw or DEFAULT_ROOT)
