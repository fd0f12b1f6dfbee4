"""What a user would pick instead of the GNN, with the same fit / predict / simulate / score: connectivity
estimators (correlation, partial correlation, ridge VAR, the regression told the true functions, the
regression learning shared spline functions) and
forecasters (GRU, transformer)."""

from circuitgnn.analyze.baselines.forecasters import GRUForecaster, TransformerForecaster
from circuitgnn.analyze.baselines.learned_functions import LearnedFunctionRegression
from circuitgnn.analyze.baselines.linear import (
    CorrelationConnectivity,
    KnownFunctionRegression,
    PartialCorrelationConnectivity,
    RidgeVAR,
)

__all__ = [
    "CorrelationConnectivity",
    "GRUForecaster",
    "KnownFunctionRegression",
    "LearnedFunctionRegression",
    "PartialCorrelationConnectivity",
    "RidgeVAR",
    "TransformerForecaster",
]
