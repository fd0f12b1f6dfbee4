"""Exceptions raised for bad input; all derive from ValueError so generic handlers still work."""


class CircuitGNNError(ValueError):
    """Base class of the package's user-facing errors."""


class ConfigError(CircuitGNNError):
    """A config file or dict is invalid; the message names the field."""


class DatasetError(CircuitGNNError):
    """A dataset folder is missing, incomplete or inconsistent; the message names the file."""


class SimulationDiverged(CircuitGNNError):
    """The simulated activity became NaN or infinite; the message names the first bad frame."""


class SimulationDegenerate(CircuitGNNError):
    """The simulated activity carries no information to learn from (a fixed point, an explosion); nothing is published."""
