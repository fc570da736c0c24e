"""Operations in time: calibrated drift monitoring and champion/challenger promotion on fresh data."""

from .drift import (CONTINUOUS_TESTS, Detector, DriftMonitor, ErrorMonitor, family_quantile, fit_detector,
                    fit_error_monitor, fit_monitor)
from .promotion import decide_promotion, gate_power
from .sequential import Cusum, CusumResult, fit_cusum, scaled_differential

__all__ = ["CONTINUOUS_TESTS", "Cusum", "CusumResult", "Detector", "DriftMonitor", "ErrorMonitor", "decide_promotion", "family_quantile", "fit_cusum", "gate_power", "scaled_differential",
           "fit_detector", "fit_error_monitor", "fit_monitor"]
