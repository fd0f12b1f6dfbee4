"""Recording readers: each format round-trips, and each bad input gives a DatasetError naming the file and field."""

from __future__ import annotations

import csv
import datetime
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from circuitgnn.data.readers import FORMATS, Recording, concatenate, read_recording
from circuitgnn.errors import DatasetError

T, N = 50, 4


def activity(t: int = T, n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, n)).astype(np.float32)


def raises(path: Path | str, pattern: str):
    """pytest.raises for a DatasetError whose message matches ``pattern`` and starts with the file's name."""
    return pytest.raises(DatasetError, match=re.escape(str(path)) + ".*" + pattern)


def write_csv(path: Path, rows: Sequence[Sequence[Any]], delimiter: str = ",") -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


# --- npy ---


def test_npy_round_trip(tmp_path):
    x = activity()
    np.save(tmp_path / "x.npy", x)
    rec = read_recording(tmp_path / "x.npy", dt=0.1)
    np.testing.assert_array_equal(rec.x, x)
    assert rec.x.dtype == np.float32 and rec.x.flags.c_contiguous and not isinstance(rec.x, np.memmap)
    assert (rec.dt, rec.segments, rec.names, rec.positions, rec.inputs, rec.units) == (0.1, (0,), None, None, None, "a.u.")
    assert rec.source == str(tmp_path / "x.npy")
    assert "npy" in FORMATS


def test_npy_rate_int_and_bool_dtypes(tmp_path):
    np.save(tmp_path / "i.npy", np.arange(T * N, dtype=np.int16).reshape(T, N))
    rec = read_recording(tmp_path / "i.npy", rate=20)
    assert rec.dt == pytest.approx(0.05) and rec.x.dtype == np.float32 and rec.x[1, 0] == N
    np.save(tmp_path / "b.npy", np.eye(T, N, dtype=bool))
    assert read_recording(tmp_path / "b.npy", dt=1.0).x.sum() == N


def test_npy_layouts(tmp_path):
    x = activity(t=10, n=3)
    np.save(tmp_path / "x.npy", x.T)  # neurons first
    with raises(tmp_path / "x.npy", r"looks transposed.*layout=\"neurons_first\""):
        read_recording(tmp_path / "x.npy", dt=1.0)
    np.testing.assert_array_equal(read_recording(tmp_path / "x.npy", dt=1.0, layout="neurons_first").x, x)
    assert read_recording(tmp_path / "x.npy", dt=1.0, layout="time_first").x.shape == (3, 10)
    with raises(tmp_path / "x.npy", "layout must be"):
        read_recording(tmp_path / "x.npy", dt=1.0, layout="rows")


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), "real numbers.*<U1"),
        (np.ones((T, N), dtype=np.complex64), "real numbers.*complex64"),
        (np.ones(T), "2-dimensional.*shape \\(50,\\)"),
        (np.ones((1, 1)), "1 frame"),
        (np.ones((T, 1)), "1 neuron"),
    ],
)
def test_npy_bad_arrays(tmp_path, array, pattern):
    np.save(tmp_path / "x.npy", array)
    with raises(tmp_path / "x.npy", pattern):
        read_recording(tmp_path / "x.npy", dt=1.0, layout="time_first")


def test_npy_object_array_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1, "a"], [2, None], [3, 4]], dtype=object), allow_pickle=True)
    with raises(tmp_path / "x.npy", "cannot read"):
        read_recording(tmp_path / "x.npy", dt=1.0)


def test_values_all_nan_and_inf(tmp_path):
    x = activity()
    x[5, 1] = np.nan  # a missing value is fine
    np.save(tmp_path / "ok.npy", x)
    assert np.isnan(read_recording(tmp_path / "ok.npy", dt=1.0).x[5, 1])
    x[:, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with raises(tmp_path / "nan.npy", "neuron 2 has no value.*all NaN"):
        read_recording(tmp_path / "nan.npy", dt=1.0)
    x = activity()
    x[7, 3] = np.inf
    np.save(tmp_path / "inf.npy", x)
    with raises(tmp_path / "inf.npy", "infinite value.*frame 7, neuron 3"):
        read_recording(tmp_path / "inf.npy", dt=1.0)
    np.save(tmp_path / "big.npy", np.full((T, N), 1e300))
    with raises(tmp_path / "big.npy", "too large for float32"):
        read_recording(tmp_path / "big.npy", dt=1.0)


def test_timing_arguments(tmp_path):
    np.save(tmp_path / "x.npy", activity())
    with raises(tmp_path / "x.npy", "no time step.*dt=.*rate="):
        read_recording(tmp_path / "x.npy")
    with raises(tmp_path / "x.npy", "dt=.*rate=.*not both"):
        read_recording(tmp_path / "x.npy", dt=0.1, rate=10)
    for bad in (0, -1.0, float("nan"), float("inf"), "0.1", True):
        with raises(tmp_path / "x.npy", "finite number > 0"):
            read_recording(tmp_path / "x.npy", dt=bad)  # type: ignore[arg-type]
    with raises(tmp_path / "x.npy", "rate must be a finite number > 0"):
        read_recording(tmp_path / "x.npy", rate=0)


def test_paths_formats_and_options(tmp_path):
    with raises(tmp_path / "none.npy", "no such file"):
        read_recording(tmp_path / "none.npy", dt=1.0)
    (tmp_path / "x.mat").write_bytes(b"data")
    with raises(tmp_path / "x.mat", r"suffix '\.mat'.*npy, npz, csv, tsv, hdf5, nwb, suite2p"):
        read_recording(tmp_path / "x.mat", dt=1.0)
    with raises(tmp_path / "x.mat", "unknown format 'mat'"):
        read_recording(tmp_path / "x.mat", format="mat", dt=1.0)
    np.save(tmp_path / "x.npy", activity())
    np.save(tmp_path / "x.data", activity())  # np.save appends .npy: x.data.npy
    assert read_recording(tmp_path / "x.data.npy", format="npy", dt=1.0).x.shape == (T, N)
    with raises(tmp_path / "x.npy", "time_column= does not apply to the npy format"):
        read_recording(tmp_path / "x.npy", dt=1.0, time_column=0)
    with raises(tmp_path / "x.npy", "key= does not apply"):
        read_recording(tmp_path / "x.npy", dt=1.0, key="x")
    (tmp_path / "empty").mkdir()
    with raises(tmp_path / "empty", "not a suite2p output"):
        read_recording(tmp_path / "empty")
    with raises(tmp_path / "empty", "format 'npy' reads a file"):
        read_recording(tmp_path / "empty", format="npy", dt=1.0)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("x.npy", "cannot read as an .npy file: it is not a NumPy"),
        ("x.npz", "cannot read as an .npz archive: it is not a NumPy"),
        ("x.h5", "cannot open as an HDF5 file"),
        ("x.csv", "cannot read as a CSV table"),
    ],
)
def test_corrupt_files(tmp_path, name, pattern):
    path = tmp_path / name
    path.write_bytes(b"\xff" + np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with raises(path, pattern):
        read_recording(path, dt=1.0)


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "x.npy", activity())
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[: len(data) // 2])
    with raises(tmp_path / "x.npy", "cannot read"):
        read_recording(tmp_path / "x.npy", dt=1.0)


def test_empty_npy_file(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"")
    with raises(tmp_path / "x.npy", "cannot read"):
        read_recording(tmp_path / "x.npy", dt=1.0)


# --- npz ---


def test_npz_round_trip(tmp_path):
    x, names, pos = activity(), np.array(["a", "b", "c", "d"]), np.arange(N * 2, dtype=np.float64).reshape(N, 2)
    np.savez(tmp_path / "r.npz", x=x, dt=0.25, names=names, positions=pos)
    rec = read_recording(tmp_path / "r.npz")
    np.testing.assert_array_equal(rec.x, x)
    assert rec.dt == 0.25 and rec.names == ("a", "b", "c", "d")
    np.testing.assert_array_equal(rec.positions, pos.astype(np.float32))
    np.savez(tmp_path / "rate.npz", x=x, rate=4.0)
    assert read_recording(tmp_path / "rate.npz").dt == 0.25
    assert read_recording(tmp_path / "rate.npz", dt=2.0).dt == 2.0  # an explicit dt wins


def test_npz_timestamps_gap_gives_segments(tmp_path):
    ts = np.concatenate([np.arange(20) * 0.1, 10.0 + np.arange(30) * 0.1])
    np.savez_compressed(tmp_path / "r.npz", x=activity(), timestamps=ts)
    rec = read_recording(tmp_path / "r.npz")
    assert rec.dt == pytest.approx(0.1) and rec.segments == (0, 20)
    np.savez(tmp_path / "k.npz", x=activity(), t=ts)
    assert read_recording(tmp_path / "k.npz", timestamps_key="t").segments == (0, 20)
    with raises(tmp_path / "k.npz", "either dt=/rate= or timestamps_key="):
        read_recording(tmp_path / "k.npz", timestamps_key="t", dt=0.1)


@pytest.mark.parametrize(
    ("ts", "pattern"),
    [
        (np.r_[np.arange(10), 9, np.arange(11, 50)] * 0.1, "increase strictly: timestamp 10"),
        (np.r_[np.arange(25) * 0.1, 2.46 + np.arange(25) * 0.1], "irregular: the step from frame 24 to 25"),
        (np.r_[np.arange(49) * 0.1, np.nan], "finite: timestamp 49"),
        (np.arange(49) * 0.1, r"expected \(50,\), one timestamp per frame"),
    ],
)
def test_npz_bad_timestamps(tmp_path, ts, pattern):
    np.savez(tmp_path / "r.npz", x=activity(), timestamps=ts)
    with raises(tmp_path / "r.npz", "array 'timestamps'.*" + pattern):
        read_recording(tmp_path / "r.npz")


def test_npz_keys(tmp_path):
    x, y = activity(), activity(seed=1)
    np.savez(tmp_path / "r.npz", x=x, y=y, dt=0.1)
    with raises(tmp_path / "r.npz", "several 2-D arrays.*key=.*'dt', 'x', 'y'"):
        read_recording(tmp_path / "r.npz")
    np.testing.assert_array_equal(read_recording(tmp_path / "r.npz", key="y").x, y)
    with raises(tmp_path / "r.npz", "no array 'z' \\(key=\\).*arrays present: 'dt', 'x', 'y'"):
        read_recording(tmp_path / "r.npz", key="z")
    with raises(tmp_path / "r.npz", "no array 'stim' \\(inputs_key=\\)"):
        read_recording(tmp_path / "r.npz", key="x", inputs_key="stim")
    np.savez(tmp_path / "none.npz", v=np.ones(T), dt=0.1)
    with raises(tmp_path / "none.npz", "no 2-D array"):
        read_recording(tmp_path / "none.npz")


def test_npz_inputs(tmp_path):
    x, stim = activity(), np.linspace(0, 1, T)
    np.savez(tmp_path / "r.npz", x=x, stim=stim, dt=0.1)
    rec = read_recording(tmp_path / "r.npz", inputs_key="stim")  # x is the only 2-D array besides the inputs
    assert rec.inputs is not None and rec.inputs.shape == (T, 1) and rec.inputs.dtype == np.float32
    np.testing.assert_allclose(rec.inputs[:, 0], stim.astype(np.float32))
    np.savez(tmp_path / "two.npz", x=x, stim=np.ones((T, 3)), dt=0.1)
    two = read_recording(tmp_path / "two.npz", inputs_key="stim").inputs
    assert two is not None and two.shape == (T, 3)
    np.savez(tmp_path / "short.npz", x=x, stim=np.ones(T - 1), dt=0.1)
    with raises(tmp_path / "short.npz", "'stim' \\(inputs_key=\\) has shape \\(49,\\): expected 50 frames"):
        read_recording(tmp_path / "short.npz", key="x", inputs_key="stim")


def test_npz_holding_a_single_array(tmp_path):
    np.save(tmp_path / "x.npy", activity())
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    with raises(tmp_path / "x.npz", "format='npy'"):
        read_recording(tmp_path / "x.npz", dt=1.0)


# --- csv / tsv ---


def test_csv_header_time_column_and_missing_cells(tmp_path):
    x = activity().astype(np.float64)
    ts = np.arange(T) * 0.05
    rows: list[list[Any]] = [["time", "n0", "n1", "n2", "n3"]]
    rows += [[repr(float(t)), *(repr(float(v)) for v in row)] for t, row in zip(ts, x, strict=True)]
    rows[3][2] = ""
    path = write_csv(tmp_path / "r.csv", rows)
    rec = read_recording(path, time_column="time")
    x[2, 1] = np.nan
    np.testing.assert_array_equal(rec.x, x.astype(np.float32))
    assert rec.names == ("n0", "n1", "n2", "n3") and rec.dt == pytest.approx(0.05) and rec.segments == (0,)
    assert read_recording(path, time_column=0).names == rec.names
    with raises(path, "no column 't' \\(time_column=\\); columns: 'time', 'n0'"):
        read_recording(path, time_column="t")
    with raises(path, "time_column=9 is out of range"):
        read_recording(path, time_column=9)
    auto = read_recording(path)  # a column headed "time" holds the frame times without being told
    np.testing.assert_array_equal(auto.x, rec.x)
    assert auto.names == rec.names and auto.dt == pytest.approx(0.05)
    given = read_recording(path, rate=1)  # an explicit rate wins over the column's times, which are still not a neuron
    assert given.x.shape == (T, 4) and given.dt == 1.0


def test_csv_without_header_and_tsv(tmp_path):
    x = activity()
    path = write_csv(tmp_path / "r.csv", [list(map(float, row)) for row in x])
    rec = read_recording(path, rate=10)
    np.testing.assert_array_equal(rec.x, x)
    assert rec.names is None and rec.dt == pytest.approx(0.1)
    tsv = write_csv(tmp_path / "r.tsv", [["a", "b", "c", "d"], *[list(map(float, row)) for row in x]], delimiter="\t")
    rec = read_recording(tsv, dt=0.5)
    np.testing.assert_array_equal(rec.x, x)
    assert rec.names == ("a", "b", "c", "d")
    np.testing.assert_array_equal(read_recording(path, dt=1.0, layout="neurons_first").x, x.T)


def test_csv_errors(tmp_path):
    rows: list[list[Any]] = [["a", "b", "c"], *[[1.0, 2.0, 3.0] for _ in range(5)]]
    rows[3][1] = "oops"
    path = write_csv(tmp_path / "r.csv", rows)
    with raises(path, "column 'b' \\(index 1\\), row 4: 'oops' is not a number"):
        read_recording(path, dt=1.0)
    path = write_csv(tmp_path / "noheader.csv", [[1.0, 2.0, 3.0], [1.0, "x", 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    with raises(path, "column 1, row 2: 'x' is not a number"):
        read_recording(path, dt=1.0)
    path = write_csv(tmp_path / "ragged.csv", [[1.0, 2.0], [1.0, 2.0, 3.0]])
    with raises(path, "row 2 has 3 cells but row 1 has 2"):
        read_recording(path, dt=1.0)
    path = write_csv(tmp_path / "nan.csv", [["a", "b", "c"], *[[1.0, "", 3.0] for _ in range(5)]])
    with raises(path, "neuron 1 \\('b'\\) has no value in any frame"):
        read_recording(path, dt=1.0)
    (tmp_path / "empty.csv").write_text("\n\n")
    with raises(tmp_path / "empty.csv", "empty"):
        read_recording(tmp_path / "empty.csv", dt=1.0)
    path = write_csv(tmp_path / "t.csv", [["t", "a", "b"], *[[float(i), 1.0, 2.0] for i in range(5)]])
    with raises(path, "time_column= needs rows that are frames"):
        read_recording(path, time_column="t", layout="neurons_first")


# --- hdf5 ---


def test_hdf5_round_trip(tmp_path):
    x, stim = activity(), np.arange(T, dtype=np.float64)
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("ophys")
        d = g.create_dataset("dff", data=x)
        d.attrs["sampling_rate"] = 30.0
        d.attrs["units"] = "dF/F"
        g.create_dataset("names", data=["n0", "n1", "n2", "n3"], dtype=h5py.string_dtype())
        g.create_dataset("positions", data=np.arange(N * 3).reshape(N, 3))
        f.create_dataset("stim", data=stim)
    rec = read_recording(path, inputs_key="stim")
    np.testing.assert_array_equal(rec.x, x)
    assert rec.dt == pytest.approx(1 / 30) and rec.units == "dF/F" and rec.names == ("n0", "n1", "n2", "n3")
    assert rec.positions is not None and rec.positions.shape == (N, 3) and rec.inputs is not None and rec.inputs.shape == (T, 1)
    assert read_recording(path, key="/ophys/dff").names == rec.names


def test_hdf5_keys_and_timestamps(tmp_path):
    x = activity()
    path = tmp_path / "r.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=x)
        f.create_dataset("b", data=x.T)
        f.create_dataset("t", data=np.r_[np.arange(10), 20 + np.arange(40)] * 0.5)
        f.create_dataset("label", data=[[b"a", b"b"], [b"c", b"d"]])
        f.create_group("grp")
    with raises(path, "several 2-D datasets.*'/a', '/b'.*key="):
        read_recording(path, dt=1.0)
    with raises(path, "no dataset 'c' \\(key=\\); datasets present: '/a', '/b', '/label', '/t'"):
        read_recording(path, key="c", dt=1.0)
    with raises(path, "'grp' \\(key=\\) is a group"):
        read_recording(path, key="grp", dt=1.0)
    with raises(path, "dataset '/label' must hold real numbers"):
        read_recording(path, key="label", dt=1.0)
    rec = read_recording(path, key="a", timestamps_key="t")
    assert rec.dt == 0.5 and rec.segments == (0, 10)
    with raises(path, "no time step.*attribute 'dt'.*on dataset '/a'"):
        read_recording(path, key="a")
    np.testing.assert_array_equal(read_recording(path, key="b", dt=1.0, layout="neurons_first").x, x)


def test_hdf5_bad_names_and_attributes(tmp_path):
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", data=activity())
        d.attrs["rate"] = -3.0
        f.create_dataset("names", data=["a", "b"], dtype=h5py.string_dtype())
    with raises(path, "attribute 'rate' of dataset '/x' must be a finite number > 0"):
        read_recording(path)
    with raises(path, "2 neuron names for the 4 neurons"):
        read_recording(path, dt=1.0)  # an explicit dt: the file's bad rate is not used


# --- suite2p ---


def write_suite2p(folder: Path, n_rois: int = 6, *, fneu: bool = True, ops: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    f = rng.uniform(100, 200, size=(n_rois, T)).astype(np.float32)
    f_neu = rng.uniform(0, 50, size=(n_rois, T)).astype(np.float32)
    iscell = np.array([[1, 0.9], [0, 0.1], [1, 0.8], [1, 0.7], [0, 0.2], [1, 0.99]])[:n_rois]
    np.save(folder / "F.npy", f)
    if fneu:
        np.save(folder / "Fneu.npy", f_neu)
    np.save(folder / "iscell.npy", iscell)
    if ops:
        np.save(folder / "ops.npy", np.array({"fs": 15.0, "nframes": T}, dtype=object), allow_pickle=True)  # as suite2p does
    stat = np.array([{"med": [10 * i, 20 * i + 1], "npix": 5} for i in range(n_rois)], dtype=object)
    np.save(folder / "stat.npy", stat, allow_pickle=True)
    return f, f_neu, iscell


def test_suite2p_round_trip(tmp_path):
    f, f_neu, iscell = write_suite2p(tmp_path / "exp" / "suite2p" / "plane0")
    rec = read_recording(tmp_path / "exp", neuropil=0.5)
    keep = np.flatnonzero(iscell[:, 0] > 0)
    np.testing.assert_allclose(rec.x, (f - 0.5 * f_neu)[keep].T, rtol=1e-6)
    assert rec.dt == pytest.approx(1 / 15) and rec.names == ("roi0", "roi2", "roi3", "roi5")
    np.testing.assert_array_equal(rec.positions, [[1, 0], [41, 20], [61, 30], [101, 50]])  # (x, y) from med [y, x]
    every = read_recording(tmp_path / "exp" / "suite2p" / "plane0", format="suite2p", cells_only=False, dt=0.1)
    assert every.x.shape == (T, 6) and every.dt == 0.1
    np.testing.assert_allclose(every.x, (f - 0.7 * f_neu).T, rtol=1e-6)


def test_suite2p_errors(tmp_path):
    write_suite2p(tmp_path / "a", fneu=False)
    with raises(tmp_path / "a", "has F.npy but no Fneu.npy"):
        read_recording(tmp_path / "a")
    write_suite2p(tmp_path / "b", ops=False)
    with raises(tmp_path / "b", "no time step.*'fs' entry in .*ops.npy"):
        read_recording(tmp_path / "b")
    for bad in (-0.1, 1.5, float("nan")):
        with raises(tmp_path / "b", "neuropil must be a number in \\[0, 1\\]"):
            read_recording(tmp_path / "b", dt=1.0, neuropil=bad)
    np.save(tmp_path / "b" / "iscell.npy", np.ones((3, 2)))
    with raises(tmp_path / "b" / "iscell.npy", "shape \\(3, 2\\), expected \\(6, 2\\)"):
        read_recording(tmp_path / "b", dt=1.0)
    np.save(tmp_path / "b" / "iscell.npy", np.zeros((6, 2)))
    with raises(tmp_path / "b" / "iscell.npy", "no ROI is flagged as a cell.*cells_only=False"):
        read_recording(tmp_path / "b", dt=1.0)
    np.save(tmp_path / "b" / "Fneu.npy", np.zeros((6, T - 1)))
    with raises(tmp_path / "b" / "Fneu.npy", "differs from F.npy's \\(6, 50\\)"):
        read_recording(tmp_path / "b", dt=1.0)
    write_suite2p(tmp_path / "c")
    (tmp_path / "c" / "ops.npy").write_bytes(b"\x93NUMPY garbage")
    with raises(tmp_path / "c" / "ops.npy", "cannot read"):
        read_recording(tmp_path / "c")
    (tmp_path / "e").mkdir()
    with raises(tmp_path / "e", "not a suite2p output folder: no F.npy"):
        read_recording(tmp_path / "e", format="suite2p")
    write_suite2p(tmp_path / "d")
    with raises(tmp_path / "d", "layout= does not apply to the suite2p format \\(suite2p files are always neurons x frames\\)"):
        read_recording(tmp_path / "d", layout="neurons_first")


# --- NWB ---


def write_nwb(path: Path, *, dff: bool = False, x: np.ndarray | None = None) -> np.ndarray:
    """An NWB file with an ophys module: Fluorescence (rate 10 Hz, pixel masks), optionally DfOverF (timestamps), a stimulus."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.ophys import DfOverF, Fluorescence, OpticalChannel, PlaneSegmentation

    x = activity() if x is None else x
    nwb = NWBFile(session_description="test", identifier="id", session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    device = nwb.create_device(name="microscope")
    channel = OpticalChannel(name="green", description="green", emission_lambda=510.0)
    plane = nwb.create_imaging_plane(
        name="plane", optical_channel=channel, description="V1", device=device, excitation_lambda=920.0, indicator="GCaMP6", location="V1"
    )
    ophys = nwb.create_processing_module(name="ophys", description="optical physiology")
    seg = PlaneSegmentation(name="rois", description="ROIs", imaging_plane=plane)
    ophys.add(seg)
    for i in range(x.shape[1]):
        seg.add_roi(pixel_mask=[(2 * i, 3 * i, 1.0), (2 * i + 2, 3 * i, 1.0)])
    fluorescence = Fluorescence(name="Fluorescence")
    ophys.add(fluorescence)
    region = seg.create_roi_table_region(description="all", region=list(range(x.shape[1])))
    fluorescence.create_roi_response_series(name="RoiResponseSeries", data=x, unit="lumens", rois=region, rate=10.0)
    if dff:
        dfof = DfOverF(name="DfOverF")
        ophys.add(dfof)
        region = seg.create_roi_table_region(description="all", region=list(range(x.shape[1])))
        ts = np.r_[np.arange(30), 40 + np.arange(len(x) - 30)] * 0.1
        dfof.create_roi_response_series(name="RoiResponseSeries", data=x * 2, unit="dF/F", rois=region, timestamps=ts)
    nwb.add_stimulus(TimeSeries(name="contrast", data=np.linspace(0, 1, len(x)), unit="a.u.", rate=10.0))
    nwb.add_stimulus(TimeSeries(name="short", data=np.ones(len(x) - 5), unit="a.u.", rate=10.0))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return x


def test_nwb_round_trip(tmp_path):
    pytest.importorskip("pynwb")
    path = tmp_path / "r.nwb"
    x = write_nwb(path)
    rec = read_recording(path, inputs_key="contrast")
    np.testing.assert_array_equal(rec.x, x)
    assert rec.dt == pytest.approx(0.1) and rec.units == "lumens" and rec.segments == (0,)
    assert rec.names == ("roi0", "roi1", "roi2", "roi3")
    assert rec.positions is not None  # (x, y) centroids of the pixel masks
    np.testing.assert_allclose(rec.positions, [[2 * i + 1, 3 * i] for i in range(N)])
    assert rec.inputs is not None and rec.inputs.shape == (T, 1)
    with raises(path, "'short' \\(inputs_key=\\) has shape \\(45,\\): expected 50 frames"):
        read_recording(path, inputs_key="short")
    with raises(path, "no time series 'nope' \\(inputs_key=\\)"):
        read_recording(path, inputs_key="nope")
    with raises(path, "layout= does not apply to the nwb format"):
        read_recording(path, layout="time_first")


def test_nwb_keys(tmp_path):
    pytest.importorskip("pynwb")
    path = tmp_path / "r.nwb"
    x = write_nwb(path, dff=True)
    with raises(
        path, "several 2-D time series.*'processing/ophys/DfOverF/RoiResponseSeries', 'processing/ophys/Fluorescence/RoiResponseSeries'"
    ):
        read_recording(path)
    with raises(path, "several time series are named 'RoiResponseSeries' \\(key=\\); pass one of their paths"):
        read_recording(path, key="RoiResponseSeries")
    with raises(path, "no time series 'F' \\(key=\\); series present: 'processing/ophys/DfOverF/RoiResponseSeries'"):
        read_recording(path, key="F")
    rec = read_recording(path, key="processing/ophys/DfOverF/RoiResponseSeries")
    np.testing.assert_array_equal(rec.x, x * 2)
    assert rec.units == "dF/F" and rec.segments == (0, 30) and rec.dt == pytest.approx(0.1)
    assert read_recording(path, key="processing/ophys/DfOverF/RoiResponseSeries", dt=0.2).segments == (0,)


def test_nwb_without_pynwb(tmp_path, monkeypatch):
    (tmp_path / "r.nwb").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "pynwb", None)
    with raises(tmp_path / "r.nwb", 'needs pynwb.*pip install "circuitgnn\\[nwb\\]"'):
        read_recording(tmp_path / "r.nwb")


def test_nwb_corrupt(tmp_path):
    pytest.importorskip("pynwb")
    (tmp_path / "r.nwb").write_bytes(b"\x89HDF\r\n" + bytes(200))
    with raises(tmp_path / "r.nwb", "cannot (open|read) as an NWB file"):
        read_recording(tmp_path / "r.nwb")


# --- concatenate ---


def test_concatenate(tmp_path):
    a = Recording(activity(), 0.1, "a", segments=(0, 10), inputs=np.ones((T, 2), np.float32), names=("p", "q", "r", "s"))
    b = Recording(activity(t=20, seed=3), 0.1 * (1 + 1e-8), "b", inputs=np.zeros((20, 2), np.float32))
    rec = concatenate([a, b])
    assert rec.x.shape == (T + 20, N) and rec.segments == (0, 10, T) and rec.source == "a + b"
    assert rec.names == a.names and rec.inputs is not None and rec.inputs.shape == (T + 20, 2)
    np.testing.assert_array_equal(rec.x[T:], b.x)
    assert concatenate([a]) is a


def test_concatenate_mismatches():
    x = activity()
    base = Recording(x, 0.1, "a", names=("p", "q", "r", "s"))
    with pytest.raises(DatasetError, match="recording 1 \\(b\\) has 3 neurons but recording 0 \\(a\\) has 4"):
        concatenate([base, Recording(x[:, :3], 0.1, "b")])
    with pytest.raises(DatasetError, match="recording 1 \\(b\\) has dt 0.2"):
        concatenate([base, Recording(x, 0.2, "b")])
    with pytest.raises(DatasetError, match="recording 1 \\(b\\) names neuron 2 'z'"):
        concatenate([base, Recording(x, 0.1, "b", names=("p", "q", "z", "s"))])
    with pytest.raises(DatasetError, match="recording 1 \\(b\\) has inputs but recording 0 \\(a\\) has none"):
        concatenate([base, Recording(x, 0.1, "b", inputs=np.ones((T, 1), np.float32))])
    with_inputs = Recording(x, 0.1, "a", inputs=np.ones((T, 1), np.float32))
    with pytest.raises(DatasetError, match="recording 1 \\(b\\) has 2 input columns but recording 0 \\(a\\) has 1"):
        concatenate([with_inputs, Recording(x, 0.1, "b", inputs=np.ones((T, 2), np.float32))])
    with pytest.raises(DatasetError, match="recording 1 \\(b\\) is in units 'dF/F'"):
        concatenate([base, Recording(x, 0.1, "b", units="dF/F")])
    with pytest.raises(DatasetError, match="at least one"):
        concatenate([])


def test_recording_checks_its_fields():
    x = activity()
    with pytest.raises(DatasetError, match="segments must increase strictly"):
        Recording(x, 0.1, "a", segments=(0, 60))
    with pytest.raises(DatasetError, match="segments"):
        Recording(x, 0.1, "a", segments=(5,))
    with pytest.raises(DatasetError, match="2 names for 4 neurons"):
        Recording(x, 0.1, "a", names=("p", "q"))
    with pytest.raises(DatasetError, match="dt must be a finite number"):
        Recording(x, 0.0, "a")
