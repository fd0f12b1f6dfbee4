"""Writing a dataset folder safely: streamed arrays, checksums, atomic completion.

A dataset is first written into a hidden sibling folder ``.NAME.partial-PID-XXXX``;
only when every array is complete and ``meta.json`` is written is the folder
renamed to ``NAME``. A run that fails or is killed therefore never leaves a
folder that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from circuitgnn.errors import DatasetError
from circuitgnn.interrupts import sigterm_as_interrupt

FORMAT_NAME = "circuitgnn-dataset"
FORMAT_VERSION = 1
META_FILE = "meta.json"
_FLOAT32 = np.dtype(np.float32)


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary name, then rename it into place."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str))


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub takes the arrays for its allow_pickle
    os.replace(tmp, path)


class NpyStream:
    """An .npy file of known final shape, filled by appending blocks of rows, with a running sha256."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype = _FLOAT32):
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._hash = hashlib.sha256()
        self._file = open(path, "wb")  # noqa: SIM115  (closed by close() or abort())
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._file, header)

    def append(self, block: np.ndarray) -> None:
        if block.shape[1:] != self.shape[1:] or block.dtype != self.dtype:
            raise ValueError(f"{self.path.name}: block {block.shape} {block.dtype} does not fit {self.shape} {self.dtype}")
        if self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"{self.path.name}: more rows than the declared {self.shape[0]}")
        data = np.ascontiguousarray(block).data.cast("B")
        self._file.write(data)
        self._hash.update(data)
        self.rows += block.shape[0]

    def close(self) -> dict[str, Any]:
        """Finish the file; returns its entry for ``meta.json``. Raises if rows are missing."""
        self._file.close()
        if self.rows != self.shape[0]:
            raise DatasetError(f"{self.path.name}: {self.rows} rows written, {self.shape[0]} expected")
        return {"file": self.path.name, "shape": list(self.shape), "dtype": self.dtype.name, "sha256": self._hash.hexdigest()}

    def abort(self) -> None:
        self._file.close()


class BackgroundStreams:
    """Appends blocks to several :class:`NpyStream` in a thread, so disk writes and hashing overlap the simulation.

    At most ``depth`` blocks wait in the queue, which bounds memory.
    """

    def __init__(self, streams: dict[str, NpyStream], depth: int = 2):
        self.streams = streams
        self._queue: queue.Queue[dict[str, np.ndarray] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                for name, block in item.items():
                    self.streams[name].append(block)
            except BaseException as err:  # re-raised in the caller's thread
                self._error = err

    def put(self, blocks: dict[str, np.ndarray]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(blocks)

    def close(self) -> dict[str, dict[str, Any]]:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return {name: s.close() for name, s in self.streams.items()}

    def abort(self) -> None:
        self._queue.put(None)
        self._thread.join()
        for s in self.streams.values():
            s.abort()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the partial folders that writers of ``path`` killed by ``kill -9`` left behind (their process is gone);
    returns them, after a warning naming them. A partial folder of a live writer is left alone."""
    gone = []
    for item in Path(path).parent.glob(f".{Path(path).name}.partial-*"):
        pid = item.name.rsplit(".partial-", 1)[1].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(item, ignore_errors=True)
            gone.append(item)
    if gone:
        warnings.warn(
            f"removed {len(gone)} partial folder(s) of killed writers: {', '.join(p.name for p in gone)}", UserWarning, stacklevel=3
        )
    return gone


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuse an existing destination unless ``overwrite``; call before any expensive work."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists: choose another --out or pass --overwrite to replace it")
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")


class DatasetWriter:
    """Context manager that builds a dataset in a partial folder and publishes it atomically.

    Usage::

        with DatasetWriter(out, overwrite=False) as w:
            stream = w.stream("x", (T, N))
            ...
            w.save("truth/connectivity.npy", W)
            w.finish(meta)       # writes meta.json and renames the folder into place
    """

    def __init__(self, path: Path, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        check_destination(self.path, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.path)
        self.tmp = self.path.parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.arrays: dict[str, dict[str, Any]] = {}
        self._finished = False

    def __enter__(self) -> DatasetWriter:
        self.tmp.mkdir()
        self._sigterm = sigterm_as_interrupt()
        self._sigterm.__enter__()  # a killed simulation removes its partial folder, as on Ctrl-C
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self._finished:
                shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            self._sigterm.__exit__(None, None, None)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):  # a full disk, a lost mount: named, not a traceback
            raise DatasetError(f"could not write the dataset {self.path} ({exc}); is the disk full? Nothing was published") from exc

    def file(self, relpath: str) -> Path:
        p = self.tmp / relpath
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def stream(self, name: str, shape: tuple[int, ...]) -> NpyStream:
        return NpyStream(self.file(f"{name}.npy"), shape)

    def save(self, relpath: str, array: np.ndarray) -> None:
        np.save(self.file(relpath), array)

    def save_json(self, relpath: str, data: Any) -> None:
        self.file(relpath).write_text(json.dumps(data, indent=2, default=str))

    def finish(self, meta: dict[str, Any]) -> Path:
        """Write meta.json (marking the dataset complete, with the sha256 of every file that is not a listed array) and
        move the folder to its final name."""
        hashed = {spec["file"] for key in ("arrays", "truth_arrays") for spec in meta.get(key, {}).values()}
        files = sorted(p for p in self.tmp.rglob("*") if p.is_file() and p.name != META_FILE)
        checksums = {str(p.relative_to(self.tmp)): file_sha256(p) for p in files if str(p.relative_to(self.tmp)) not in hashed}
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "complete": True, **meta, "checksums": checksums}
        write_json_atomic(self.tmp / META_FILE, meta)
        if self.path.exists():
            check_destination(self.path, self.overwrite)
            trash = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.path, trash)
            os.replace(self.tmp, self.path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)
        self._finished = True
        return self.path
