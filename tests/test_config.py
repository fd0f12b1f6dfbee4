from pathlib import Path

import pytest

from circuitgnn.config import config_from_dict, describe_fields, dump_config, load_config
from circuitgnn.errors import ConfigError
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.name != "reproduce.yaml")  # that one is the manifest


def test_every_shipped_config_validates():
    names = {p.stem for p in CONFIGS}
    expected = {
        "quick",
        "fig2_baseline",
        "supp3_fixed_embedding",
        "supp10_high_noise",
        "supp11_n8000",
        "supp12_32types",
        "supp13_transmitters",
        "supp14_transmitters_receptors",
        "fig3_external_inputs",
        *(f"supp7_frames_{k}k" for k in (10, 20, 30, 40, 50)),
        *(f"supp8_sparse_{p:02d}" for p in (5, 10, 20, 50)),
    }
    assert expected <= names
    for path in CONFIGS:
        cfg = load_config(path)
        assert cfg.name == path.stem


def test_every_paper_config_says_how_to_train_it():
    import yaml

    for path in CONFIGS:
        raw = yaml.safe_load(path.read_text())
        if path.stem.startswith("family_"):  # issue 21: these test the default settings on purpose
            assert "model" not in raw and raw["training"] == {"extensions": {"warm_start": {}}}, path.name
            continue
        assert "training" in raw and "model" in raw, f"{path.name} relies on default training settings"


def test_paper_configs_follow_the_spec_table():
    sim = {p.stem: load_config(p).simulation for p in CONFIGS}
    assert sim["fig2_baseline"].n_neurons == 1000 and sim["fig2_baseline"].n_frames == 100_000
    assert sim["supp11_n8000"].n_neurons == 8000 and sim["supp11_n8000"].noise_std == 1.0
    assert sim["supp10_high_noise"].noise_std == 7.2
    assert [sim[f"supp8_sparse_{p:02d}"].connectivity.filling_factor for p in (5, 10, 20, 50)] == [0.05, 0.1, 0.2, 0.5]
    assert all(sim[f"supp8_sparse_{p:02d}"].burn_in == 0 for p in (5, 10, 20, 50))
    assert [sim[f"supp7_frames_{k}k"].n_frames for k in (50, 40, 30, 20, 10)] == [50_000, 40_000, 30_000, 20_000, 10_000]
    s32 = sim["supp12_32types"].neurons
    assert s32.n_types == 32 and sorted(set(s32.table("decay"))) == [1, 2, 3, 4]
    assert sorted(set(s32.table("self_coupling"))) == list(range(1, 9))
    # each (s, c) pair appears exactly once among the first 16 and the last 16 types
    assert len({(s, c) for s, c in zip(s32.table("self_coupling"), s32.table("decay"), strict=True)}) == 32
    assert sim["supp13_transmitters"].neurons.signal == "sender"
    assert sim["supp13_transmitters"].neurons.table("width") == [1, 2, 4, 8]
    assert sim["supp14_transmitters_receptors"].neurons.signal == "pair"
    model = {p.stem: load_config(p).model for p in CONFIGS}
    assert model["supp3_fixed_embedding"].fixed_embedding and not model["fig2_baseline"].fixed_embedding
    assert model["supp13_transmitters"].psi_input == "x_j,a_j" and model["fig3_external_inputs"].psi_input == "x_j,a_j"
    assert model["supp14_transmitters_receptors"].psi_input == "x_j,a_i,a_j"
    assert model["fig3_external_inputs"].external_input == "field"
    f3 = sim["fig3_external_inputs"]
    assert f3.n_neurons == 2048 and f3.stimulus.mode == "multiplicative" and f3.stimulus.n_driven == 1024
    assert f3.burn_in == 10_000 and f3.noise_std == 1.0


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "yaml_text, field, words",
    [
        ("simulation:\n  n_neuronz: 10\n", "simulation.n_neuronz", "unknown key"),
        ("simulation:\n  neurons:\n    colour: red\n", "simulation.neurons.colour", "unknown key"),
        ("simulation:\n  n_neurons: many\n", "simulation.n_neurons", "integer"),
        ("simulation:\n  n_neurons: 1\n", "simulation.n_neurons", "greater than or equal to 2"),
        ("simulation:\n  dt: 0\n", "simulation.dt", "greater than 0"),
        ("simulation:\n  dt: -0.01\n", "simulation.dt", "greater than 0"),
        ("simulation:\n  connectivity:\n    filling_factor: 0\n", "simulation.connectivity.filling_factor", "greater than 0"),
        ("simulation:\n  connectivity:\n    filling_factor: 1.5\n", "simulation.connectivity.filling_factor", "less than or equal to 1"),
        ("simulation:\n  n_neurons: 3\n", "n_types (4) is larger than n_neurons (3)", ""),
        ("simulation:\n  neurons:\n    decay: [1, 2, 3]\n", "neurons.decay has 3 values but n_types is 4", ""),
        (
            "simulation:\n  neurons:\n    n_types: 2\n    self_coupling: [1, 2, 1]\n",
            "neurons.self_coupling has 3 values but n_types is 2",
            "",
        ),
        ("simulation:\n  neurons:\n    width: [1, 0, 1, 1]\n", "neurons.width must be > 0", ""),
        ("simulation:\n  neurons:\n    type_fractions: [0.5, 0.5, 0.5, 0]\n", "sum to 1", ""),
        (
            "simulation:\n  n_neurons: 100\n  stimulus:\n    mode: multiplicative\n    grid_size: 32\n",
            "drives 1024 neurons but n_neurons is 100",
            "",
        ),
        ("simulation:\n  stimulus:\n    mode: multiplicative\n    source: oscillation\n", "set stimulus.mode to 'additive'", ""),
        ("simulation:\n  connectivity:\n    kind: file\n", "connectivity.path is not set", ""),
        ("simulation: [1, 2]\n", "simulation", "valid dictionary"),
    ],
)
def test_bad_config_names_the_field(tmp_path, yaml_text, field, words):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, yaml_text))
    assert field in str(err.value)
    assert words in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "simulation: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    p = sub / "c.yaml"
    p.write_text("simulation:\n  connectivity:\n    kind: file\n    path: w.npy\n")
    assert load_config(p).simulation.connectivity.path == (sub / "w.npy").resolve()


def test_scalars_broadcast_and_leak_default():
    cfg = tiny_config(neurons={"gain": 3.0, "width": [1, 2, 4, 8]}).simulation.neurons
    assert cfg.table("gain") == [3.0] * 4
    assert cfg.table("leak") == pytest.approx([0.0, 0.013863, 0.027726, 0.041589], abs=1e-6)


def test_every_field_is_described_and_dump_round_trips(tmp_path):
    rows = describe_fields()
    assert all(desc for _, _, desc in rows), [name for name, _, desc in rows if not desc]
    cfg = load_config(CONFIGS[0])
    p = _write(tmp_path, dump_config(cfg))
    assert load_config(p) == cfg


@pytest.mark.parametrize("k", [1, 3, 7])
def test_any_number_of_types_validates_with_the_default_per_type_parameters(k):
    """Per-type parameters default to one number, so n_types alone is a valid config (regression: the
    defaults were the paper's 4-element lists and n_types 3 was refused)."""
    cfg = config_from_dict({"simulation": {"n_neurons": 20, "neurons": {"n_types": k}}})
    for name in ("gain", "self_coupling", "decay", "bias", "width", "threshold", "leak"):
        assert len(cfg.simulation.neurons.table(name)) == k, name


def test_configs_written_before_the_extensions_were_grouped_still_load():
    """Every old run folder's config.yaml and checkpoint holds the keys at their old places (regression)."""
    old = {
        "training": {
            "regularization": {"monotone_norm": True, "w_shrink_keep_norm": False},
            "clustering": {"every_epochs": 2, "stop_at_ari": 0.99},
            "w_solve": {"frames": 100},
        }
    }
    with pytest.warns(DeprecationWarning, match="stop_at_ari -> training.extensions.stop_clustering_at_ari"):
        cfg = config_from_dict(old)
    ext = cfg.training.extensions
    assert ext.monotone_norm and not ext.w_shrink_keep_norm and ext.stop_clustering_at_ari == 0.99
    assert ext.w_solve is not None and ext.w_solve.frames == 100


def test_empty_binary_and_deeply_nested_config_files_are_named(tmp_path):
    """Regression: an empty file was taken as all defaults; non-UTF-8 and deeply nested YAML gave tracebacks."""
    import pytest

    from circuitgnn.config import load_config
    from circuitgnn.errors import ConfigError

    cases = {"empty.yaml": b"", "binary.yaml": b"\xff\xfe\x00name: x", "deep.yaml": b"a: " + b"[" * 3000 + b"]" * 3000}
    expected = {"empty.yaml": "is empty", "binary.yaml": "is not UTF-8 text", "deep.yaml": "is not valid YAML"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError, match=expected[name]):
            load_config(tmp_path / name)
