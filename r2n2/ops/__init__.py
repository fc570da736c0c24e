"""Operations in time: calibrated drift monitoring and champion/challenger promotion on fresh data."""

from .drift import (CONTINUOUS_TESTS, Detector, DriftMonitor, ErrorMonitor, family_quantile, fit_detector,
                    fit_error_monitor, fit_monitor)
from .promotion import decide_promotion

__all__ = ["CONTINUOUS_TESTS", "Detector", "DriftMonitor", "ErrorMonitor", "decide_promotion", "family_quantile",
           "fit_detector", "fit_error_monitor", "fit_monitor"]
