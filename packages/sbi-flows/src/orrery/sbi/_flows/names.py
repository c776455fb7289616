"""Names of the flow families and base distributions (no flowjax import: cheap to load)."""

FLOW_FAMILIES: tuple[str, ...] = (
    "spline",
    "affine",
    "autoregressive",
    "neural_autoregressive",
    "spline_affine",
)
BASE_DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "student_t")
