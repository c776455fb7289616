"""Calibration diagnostics for amortized posteriors (SBC, coverage, TARP, C2ST, plots)."""

from .c2st import c2st

__all__ = ["c2st"]
