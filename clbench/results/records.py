"""Run records: one JSON file per run, written atomically, validated on load.

Whatever a run produced, its record can be written: non-finite floats (NaN, inf) become
``null`` and their places are listed in the record's ``nonfinite`` field; values JSON
cannot hold (tensors, arrays, numpy scalars, arbitrary objects) are converted (to numbers,
lists or their text). A failed write keeps the previous file and raises
:class:`RecordWriteError` (one line, naming the path and where a copy went).

A record names the process that writes it (``pid``, ``host``), so that a record left
at ``running`` by a killed process can be told from a live run (:func:`liveness`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import json
import math
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Union

from clbench.errors import DiskFullError, UserError

SCHEMA_VERSION = 1
#: ``running`` while the run goes on (saved after every experience), then one of the others:
#: ``complete``, ``failed`` (an error; ``error`` says which) or ``interrupted`` (SIGTERM/SIGINT,
#: e.g. a SLURM time limit; the rows done so far are kept).
STATUSES = ("running", "complete", "failed", "interrupted")
#: what a run id may be (clbench makes ``<time>-s<seed>-<hex>``; hand-made ones may hold a record name such
#: as ``er+fpf``): one path component, no ``/``, ``\\``, NUL or control character, never ``.``/``..``
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,127}")
#: errors that mean the disk (or the user's quota) is full
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class RecordError(UserError, ValueError):
    """A record file that cannot be read or does not follow the schema; names the path."""


class RecordWriteError(RecordError):
    """A record (or the results folder) that cannot be written; names the path. The
    previous version of the file, if any, is unchanged."""


class DiskFullWriteError(DiskFullError, RecordWriteError):
    """A record or checkpoint write that failed because the disk (or quota) is full: both a
    :class:`DiskFullError` (the run stops ``interrupted``, resumable) and a :class:`RecordWriteError`."""


@dataclass
class RunRecord:
    """Everything needed to rebuild a leaderboard row and audit the run."""

    run_id: str
    created: str
    seed: int
    scenario: dict  # name, kind, visibility, num_experiences, class_order, description
    strategy: dict  # name, config, deviations
    config: dict  # the resolved run config
    matrix: list  # (T+1) x T accuracy matrix, filled row by row
    union_accuracy: list = field(default_factory=list)  # A_i, i = 1..done
    forgetting_matrix: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)  # train_s / eval_s per experience
    params: dict = field(default_factory=dict)  # total, trainable, buffers, added per experience
    compute: dict = field(default_factory=dict)  # peak memory, flops where counted
    environment: dict = field(default_factory=dict)  # clbench version, git sha, library versions, device
    deviations: list = field(default_factory=list)  # from the method's paper protocol
    extra: dict = field(default_factory=dict)  # family-specific results (e.g. multi-label)
    status: str = "running"
    error: Optional[str] = None
    experiences_done: int = 0
    schema_version: int = SCHEMA_VERSION
    # Optional since clbench 0.1 (older records lack them and read as None / []):
    pid: Optional[int] = field(default_factory=os.getpid)  # the process writing the record
    host: Optional[str] = field(default_factory=socket.gethostname)
    updated: Optional[str] = None  # time of the last save (UTC, ISO 8601)
    nonfinite: list = field(default_factory=list)  # paths of values saved as null because NaN/inf, e.g. "metrics.ACC"

    def to_dict(self) -> dict:
        """The record as JSON data: a converted copy (:func:`to_json_data`; NaN/inf as None)."""
        return record_data(self)

    def fields(self) -> dict:
        """The record's fields as they are (no copy, no conversion)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "RunRecord":
        validate(data, source)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values.setdefault("pid", None)  # a record that does not say who wrote it: not the reader
        values.setdefault("host", None)
        return cls(**values)


_REQUIRED = {
    "schema_version": int, "run_id": str, "created": str, "seed": int, "scenario": dict,
    "strategy": dict, "config": dict, "matrix": list, "metrics": dict, "status": str,
}


def validate(data: Any, source: str) -> None:
    """Raise :class:`RecordError` naming ``source`` if ``data`` is not a valid record."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: a run record must be a JSON object, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise RecordError(f"{source}: missing fields {missing}")
    for key, typ in _REQUIRED.items():
        if not isinstance(data[key], typ) or (typ is int and isinstance(data[key], bool)):
            raise RecordError(f"{source}: field {key!r} should be {typ.__name__}, got {type(data[key]).__name__}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"{source}: schema version {data['schema_version']}, this clbench reads {SCHEMA_VERSION}")
    if data["status"] not in STATUSES:
        raise RecordError(f"{source}: status {data['status']!r} is not one of {list(STATUSES)}")
    for key in ("name",):
        if key not in data["scenario"] or key not in data["strategy"]:
            raise RecordError(f"{source}: scenario and strategy must both name themselves ('name')")
    for key, typ in (("pid", int), ("host", str), ("nonfinite", list), ("updated", str)):
        if data.get(key) is not None and not isinstance(data[key], typ):
            raise RecordError(f"{source}: field {key!r} should be {typ.__name__}, got {type(data[key]).__name__}")


# -- serialising whatever the numbers are ------------------------------------------------

def to_json_data(value: Any, where: str = "") -> tuple[Any, list[str]]:
    """``value`` as data ``json.dump(..., allow_nan=False)`` accepts, and the paths
    (``metrics.ACC``, ``matrix[2][1]``) of the non-finite floats replaced by None.

    Tensors and arrays become (nested) lists, 0-d ones and numpy scalars numbers,
    dataclasses dicts, dict keys strings, anything else its ``str``."""
    bad: list[str] = []
    return _convert(value, where, bad, 0), bad


def _convert(v: Any, where: str, bad: list[str], depth: int) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        if math.isfinite(v):
            return float(v)
        bad.append(where or "<value>")
        return None
    if depth > 64:  # a cycle or absurd nesting: keep its text
        return _text(v)
    if isinstance(v, dict):
        return {_key(k): _convert(x, f"{where}.{_key(k)}" if where else _key(k), bad, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_convert(x, f"{where}[{i}]", bad, depth + 1) for i, x in enumerate(v)]
    if isinstance(v, (set, frozenset)):
        return [_convert(x, f"{where}[{i}]", bad, depth + 1) for i, x in enumerate(sorted(v, key=repr))]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _convert({f.name: getattr(v, f.name) for f in dataclasses.fields(v)}, where, bad, depth + 1)
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if hasattr(v, "tolist") and callable(v.tolist):  # torch.Tensor, numpy.ndarray, numpy scalars
        try:
            if hasattr(v, "detach"):
                v = v.detach().cpu()
            plain = v.tolist()
        except Exception:  # noqa: BLE001 - e.g. a meta tensor: keep its text
            return _text(v)
        if plain is not v:
            return _convert(plain, where, bad, depth + 1)
    if isinstance(v, complex):
        return _text(v)
    try:  # numbers that are neither int nor float (Decimal, Fraction, numpy types without tolist)
        import numbers

        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, numbers.Real):
            return _convert(float(v), where, bad, depth + 1)
    except Exception:  # noqa: BLE001
        pass
    return _text(v)


def _key(k: Any) -> str:
    return k if isinstance(k, str) else _text(k)


def _text(v: Any) -> str:
    try:
        return str(v)
    except Exception:  # noqa: BLE001 - a __str__ that raises
        return f"<{type(v).__name__}>"


# -- where records go ------------------------------------------------------------------------

def valid_run_id(run_id: Any) -> bool:
    """Whether ``run_id`` is a run id (:data:`RUN_ID`): a name that is one path component."""
    return isinstance(run_id, str) and RUN_ID.fullmatch(run_id) is not None


def check_run_id(run_id: Any, source: str = "") -> str:
    """``run_id`` if it is valid, else :class:`RecordError` naming it (and ``source``)."""
    if not valid_run_id(run_id):
        where = f"{source}: " if source else ""
        raise RecordError(f"{where}{run_id!r} is not a valid run id (letters, digits, '.', '_', '+', '=', '@', '-'; "
                          "at most 128, starting with a letter or digit): refused, a run id names files under results_dir")
    return run_id


def _component(name: Any, what: str, source: str) -> str:
    """``name`` if it can be one folder name under results_dir (no separator, not '.'/'..')."""
    text = str(name)
    if not text or text in (".", "..") or any(c in text for c in "/\\\0") or any(ord(c) < 32 for c in text):
        raise RecordError(f"{source}: {what} {text!r} cannot name a folder under results_dir (refused)")
    return text


def path_for(results_dir: Union[str, Path], scenario: Any, strategy: Any, run_id: Any) -> Path:
    """``<results_dir>/runs/<scenario>/<strategy>/<run_id>.json``, every part checked to be
    one path component (so the path never leaves ``results_dir``)."""
    source = f"record of run {run_id!r}"
    return (Path(results_dir) / "runs" / _component(scenario, "scenario name", source)
            / _component(strategy, "strategy name", source) / f"{check_run_id(run_id, 'record')}.json")


def record_path(results_dir: Union[str, Path], record: RunRecord) -> Path:
    """results/runs/<scenario>/<strategy>/<run_id>.json (:func:`path_for`)."""
    return path_for(results_dir, record.scenario.get("name"), record.strategy.get("name"), record.run_id)


def inside(root: Union[str, Path], path: Union[str, Path]) -> bool:
    """Whether ``path``, resolved (symbolic links and ``..`` followed), lies inside ``root`` resolved."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) says the disk or quota is full."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, DiskFullError) or (isinstance(err, OSError) and err.errno in DISK_FULL):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


# -- writing -------------------------------------------------------------------------------


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: Union[str, Path], mode: str = "w") -> Iterator[IO]:
    """A file object whose content replaces ``path`` only once it is whole: written to a
    temp file beside it, fsynced, then renamed over it, with the permissions a plain
    ``open`` would give (0666 less the umask). On failure the previous file is unchanged
    and the temp file removed; the error propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Union[str, Path], data: Any) -> Path:
    """Write JSON to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")
    return Path(path)


def record_data(record: RunRecord) -> dict:
    """The JSON data of ``record``: every value converted (:func:`to_json_data`), the
    non-finite ones listed under ``nonfinite``."""
    raw = record.fields()
    raw.pop("nonfinite", None)
    data, bad = to_json_data(raw)
    data["nonfinite"] = sorted(set(bad) | {str(p) for p in (record.nonfinite or [])})
    return data


def save(record: RunRecord, results_dir: Union[str, Path]) -> Path:
    """Write ``record`` atomically to its place under ``results_dir``; return the path.

    Never fails on the record's values (see :func:`record_data`). If the file cannot be
    written (no permission, a file where a folder should be, a full disk), the previous
    version stays, a copy is attempted under the temp folder, and
    :class:`RecordWriteError` says so in one line."""
    record.updated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    data = record_data(record)
    path = record_path(results_dir, record)
    try:
        return write_json_atomic(path, data)
    except OSError as err:
        reason = err.strerror or str(err)
        copy = _rescue(record, data)
        where = f"; a copy is at {copy}" if copy else ""
        if disk_full(err):
            raise DiskFullWriteError(f"disk full: could not save the run record {path} ({reason}); the previous "
                                     f"version, if any, is unchanged{where}") from err
        raise RecordWriteError(
            f"could not save the run record {path}: {reason}"
            f"{' (' + str(err.filename) + ')' if err.filename and str(err.filename) != str(path) else ''}"
            f"; the previous version, if any, is unchanged{where}") from err


def _rescue(record: RunRecord, data: dict) -> Optional[Path]:
    """Write ``data`` under the temp folder when its place cannot be written; None if that fails too."""
    try:
        where = Path(tempfile.gettempdir()) / "clbench-unsaved-records" / f"{record.run_id}.json"
        return write_json_atomic(where, data)
    except Exception:  # noqa: BLE001 - best effort
        return None


def check_writable(results_dir: Union[str, Path]) -> Path:
    """Raise :class:`RecordWriteError` naming the path if run records cannot be written
    under ``results_dir`` (it is a file, or it or its nearest existing parent is not a
    writable folder: tried by a real write, as permission bits do not tell for root, a
    read-only mount or /proc); leave nothing behind. Return the path."""
    root = Path(results_dir).expanduser()
    probe = root
    try:
        while not probe.exists():
            if probe.is_symlink():
                raise RecordWriteError(f"results_dir {str(root)!r}: {probe} is a dangling symbolic link")
            if probe.parent == probe:
                break
            probe = probe.parent
        if not probe.is_dir():
            what = "results_dir" if probe == root else f"results_dir {str(root)!r}: its parent"
            raise RecordWriteError(f"{what} {str(probe)!r} is not a folder (a file is in the way); "
                                   "choose another results_dir=")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise RecordWriteError(f"results_dir {str(root)!r}: {str(probe)!r} is not writable by this user; "
                                   "choose another results_dir=")
        if probe == root:  # an existing folder: try a real write (read-only mounts, quotas)
            runs = root / "runs"
            target = runs if runs.is_dir() else root
            fd, tmp = tempfile.mkstemp(prefix=".clbench-write-test.", dir=target)
            os.close(fd)
            os.unlink(tmp)
        else:  # the nearest existing parent: a folder must be creatable there (not so in /proc, /sys)
            os.rmdir(tempfile.mkdtemp(prefix=".clbench-write-test.", dir=probe))
    except RecordWriteError:
        raise
    except OSError as err:
        raise RecordWriteError(f"results_dir {str(root)!r} is not writable: {err.strerror or err}; "
                               "choose another results_dir=") from None
    return root


# -- reading -------------------------------------------------------------------------------

def load(path: Union[str, Path]) -> RunRecord:
    """Read and validate a record; a malformed or unreadable file raises
    :class:`RecordError` naming it."""
    path = Path(path)
    try:
        if path.is_dir():
            raise RecordError(f"{path}: is a folder, not a record file")
        data = json.loads(path.read_text())
    except RecordError:
        raise
    except FileNotFoundError:
        raise RecordError(f"{path}: no such record file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise RecordError(f"{path}: not a run record (nested too deeply)") from None
    except OSError as err:  # a symlink loop, a permission, an I/O error
        raise RecordError(f"{path}: cannot read ({err.strerror or err})") from None
    return RunRecord.from_dict(data, str(path))


def find(results_dir: Union[str, Path]) -> list[Path]:
    """All record files under ``results_dir/runs``."""
    return sorted((Path(results_dir) / "runs").rglob("*.json"))


#: the temporary file :func:`atomic_file` writes beside ``<name>`` (``tempfile.mkstemp``'s 8 characters)
TEMP_FILE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
#: a temporary file younger than this may be being written (by a resumed run, say): left alone
TEMP_GRACE_S = 120.0


def stale_temp_files(folder: Path, writer_live: Any = lambda name: False) -> list[Path]:
    """The temporary files :func:`atomic_file` left in ``folder`` (``.<name>.<8 chars>.tmp``,
    nothing else) older than :data:`TEMP_GRACE_S` whose writer is not live
    (``writer_live(name)``)."""
    found = []
    now = time.time()
    for path in folder.glob(".*.tmp") if folder.is_dir() else []:
        match = TEMP_FILE.fullmatch(path.name)
        try:
            if match is None or path.is_symlink() or not path.is_file() or now - path.stat().st_mtime < TEMP_GRACE_S:
                continue
        except OSError:
            continue
        if not writer_live(match["name"]):
            found.append(path)
    return found


def clean_temp(results_dir: Union[str, Path]) -> list[Path]:
    """Remove the temporary record files that killed runs left under ``results_dir/runs``
    (a kill during a record's write); a live run's are kept. Return what was removed."""
    removed = []
    for folder in sorted((Path(results_dir) / "runs").glob("*/*/")):

        def live(name: str, folder: Path = folder) -> bool:
            try:
                rec = load(folder / name)
            except RecordError:
                return False
            return rec.status == "running" and liveness(rec) != "gone"

        for path in stale_temp_files(folder, live):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


# -- is a "running" record's process still there? ------------------------------------------

def liveness(record: RunRecord) -> Optional[str]:
    """For a ``running`` record: ``"live"`` (its process runs on this host),
    ``"gone"`` (this host, and that process no longer exists: killed, or the machine
    rebooted) or ``"unknown"`` (another host, or a record that does not say). None for
    any other status."""
    if record.status != "running":
        return None
    if not isinstance(record.pid, int) or not record.host or record.host != socket.gethostname():
        return "unknown"
    if record.pid == os.getpid():
        return "live"
    if record.pid <= 0:
        return "gone"
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:  # it exists, under another user
        pass
    except OSError:
        return "unknown"
    started = process_start(record.pid)
    resumed = record.extra.get("resumed") if isinstance(record.extra, dict) else None
    since = resumed[-1].get("at") if isinstance(resumed, list) and resumed and isinstance(resumed[-1], dict) else None
    created = _parse_time(since or record.created)  # a resumed run's process started at its last resume
    if started is not None and created is not None and started > created.timestamp() + 5:
        return "gone"  # that pid now belongs to a process started after the run: the run's is gone
    return "live"


def process_start(pid: int) -> Optional[float]:
    """Start time (epoch seconds) of ``pid`` from /proc, None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: starttime, in clock ticks since boot
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _parse_time(text: Any) -> Optional[_dt.datetime]:
    try:
        t = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def liveness_note(record: RunRecord, *, detail: bool = True) -> str:
    """For a ``running`` record, whether its writer still runs (see :func:`liveness`),
    e.g. ``process gone: killed?``; '' for any other status."""
    state = liveness(record)
    where = f"pid {record.pid} on {record.host}" if record.pid and record.host else ""
    if state == "gone":
        return "process gone: killed?" + (f"; {where} no longer runs" if detail else "")
    if state == "live":
        return "live" + (f": {where}" if detail else "")
    if state == "unknown":
        return (where or "its process not recorded") + "; cannot check from here"
    return ""


def status_text(record: RunRecord) -> str:
    """The status as people should read it, e.g. ``running (process gone: killed?)``
    for a record whose writer died without saying so (then the pid and host)."""
    note = liveness_note(record, detail=False)
    if not note:
        return record.status
    text = f"{record.status} ({note})"
    if liveness(record) != "unknown" and record.pid and record.host:
        text += f" - pid {record.pid} on {record.host}"
    return text
