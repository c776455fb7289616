"""Ensembles of MAP/MLE and SVI fits, vmapped and sharded over a member axis.

Three layers:

* functional primitives — `ensemble_init`, `ensemble_loss`, `ensemble_step`;
* numpyro-like runners with ``init`` / ``update`` / ``run`` — `EnsembleMAP`,
  `EnsembleVI`;
* one-call sugar — `ensemble_map`, `ensemble_vi`, `ensemble_predict`;

plus summaries (`predictive_summary`, `to_draws`,
`ensemble_predictive`) and the containers `EnsembleState` and
`EnsembleResult`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ensemble-inference")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from .api import ensemble_map, ensemble_predict, ensemble_vi
from .elbo import TemperedELBO
from .map import EnsembleMAP
from .primitives import ensemble_init, ensemble_loss, ensemble_step
from .state import EnsembleResult, EnsembleState
from .summary import PredictiveSummary, ensemble_predictive, predictive_summary, to_draws
from .vi import EnsembleVI, as_numpyro_optimizer

__all__ = [
    "EnsembleMAP",
    "EnsembleResult",
    "EnsembleState",
    "EnsembleVI",
    "PredictiveSummary",
    "TemperedELBO",
    "__version__",
    "as_numpyro_optimizer",
    "ensemble_init",
    "ensemble_loss",
    "ensemble_map",
    "ensemble_predict",
    "ensemble_predictive",
    "ensemble_step",
    "ensemble_vi",
    "predictive_summary",
    "to_draws",
]
