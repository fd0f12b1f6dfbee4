"""Loading, validating, dumping and describing configs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from circuitgnn.config.experiment import ExperimentConfig
from circuitgnn.errors import ConfigError


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        lines.append(f"  {loc or '<top level>'}: {msg}")
    return "\n".join(lines)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative file paths in the config relative to the config file's folder."""
    sim = data.get("simulation")
    targets = [(data.get("model"), "connectivity_mask")]
    if isinstance(sim, dict):
        targets += [(sim.get("connectivity"), "path"), (sim.get("stimulus"), "path")]
    for sec, key in targets:
        if isinstance(sec, dict) and isinstance(sec.get(key), str):
            p = Path(sec[key]).expanduser()
            if not p.is_absolute():
                sec[key] = str((base / p).resolve())


# keys that moved into training.extensions: (section under training, old key, new key)
_MOVED = (
    ("regularization", "monotone_norm", "monotone_norm"),
    ("regularization", "w_shrink_keep_norm", "w_shrink_keep_norm"),
    ("clustering", "stop_at_ari", "stop_clustering_at_ari"),
    (None, "w_solve", "w_solve"),
)


def _move_old_keys(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Configs written before the extensions were grouped (every run folder's config.yaml and checkpoint) still load."""
    training = data.get("training")
    if not isinstance(training, dict):
        return data
    training = dict(training)
    extensions = dict(training.get("extensions") or {})
    moved = []
    for section, old, new in _MOVED:
        holder = training if section is None else training.get(section)
        if isinstance(holder, dict) and old in holder:
            holder = dict(holder)
            value = holder.pop(old)
            if section is None:
                training = holder
            else:
                training[section] = holder
            extensions.setdefault(new, value)
            moved.append(f"training.{section + '.' if section else ''}{old} -> training.extensions.{new}")
    if not moved:
        return data
    warnings.warn(f"config {source}: old keys read as {'; '.join(moved)}", DeprecationWarning, stacklevel=3)
    training["extensions"] = extensions
    return {**data, "training": training}


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a plain dict as an :class:`ExperimentConfig`, raising :class:`ConfigError` naming the fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping at the top level, got {type(data).__name__}")
    data = _move_old_keys(data, source)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Load and validate a YAML experiment config.

    Relative paths inside the file are taken relative to the file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text ({err})") from None
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err)[:300]}") from None
    if data is None:
        raise ConfigError(
            f"config file {path} is empty: write at least a name (every other field has a default; see circuitgnn config-help)"
        )
    if isinstance(data, dict):
        _resolve_paths(data, path.parent.resolve())
    return config_from_dict(data, source=str(path))


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML text (all fields, defaults included)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def describe_fields(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, description) for every field, recursing into sections."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        dotted = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.append((dotted, "", field.description or ""))
            rows.extend(describe_fields(ann, dotted + "."))
        else:
            default = field.get_default(call_default_factory=True)
            rows.append((dotted, repr(default), field.description or ""))
    return rows
