"""Single L1 and elastic-net fits of one linear predictor through glum, stored as scikit-learn.

scikit-learn's saga (logistic) and coordinate descent on the full design were most of a single L1
job; glum's IRLS with coordinate descent on the small Hessian solves the same objective several
times faster. Binary logistic regression and least squares go through glum; multiclass stays on
scikit-learn (glum has no multinomial family), and so do L2 and unpenalised fits (lbfgs and
closed forms are fast already).

The convention maps onto glum without rescaling: glum minimises
``1/(2*sum(s)) * deviance(y, mu; s) + alpha*(l1_ratio*||w||_1 + (1-l1_ratio)/2*||w||_2^2)``;
the binomial deviance is twice the summed log-loss and the normal one the summed squared error,
so the data term is the mean log-loss or half the mean squared error, and ``alpha = strength``.
glum normalises the sample weights ``s`` to sum to one; 'balanced' class weights sum to n_train,
so the weighted objective is scikit-learn's with ``class_weight='balanced'`` as well. The
pipeline standardizes already, so ``scale_predictors=False``; the intercept is never penalised.

The fitted weights are copied into the scikit-learn estimator that ``stored_as`` names (the one
scikit-learn would have fitted), so predict, the skops artifact and ONNX export do not change.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from service.training.spec import Task, TrainingSpec

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "GLUM_GRADIENT_TOL",
    "GLUM_MAX_ITER",
    "GLUM_THREADS",
    "fit_glum",
    "glum_estimator",
    "glum_native",
    "glum_threads",
    "is_glum",
    "takes",
]

#: glum's stopping tolerance on the largest (sub)gradient component of the objective: the
#: coefficients then match a converged scikit-learn fit to about 1e-5 on standardized inputs.
GLUM_GRADIENT_TOL = 1e-6
#: glum's cap on IRLS iterations (each one a few coordinate-descent sweeps over the Hessian).
GLUM_MAX_ITER = 100
#: Threads (OpenMP and BLAS) of a glum fit. glum and tabmat open hundreds of short parallel
#: regions per fit (a few ms each on 160k x 50), each waiting until all its threads are scheduled:
#: on 2 shared cores, 2 threads made a 20-point path 2x slower in wall time than 1 and doubled
#: its CPU time (measured side by side, load average 10). The rest of a job keeps its threads.
GLUM_THREADS = 1
#: Penalties whose fits go through glum.
GLUM_PENALTIES = ("l1", "elasticnet")


@contextmanager
def glum_threads() -> Iterator[None]:
    """glum's OpenMP and BLAS calls on GLUM_THREADS threads while the block runs."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=GLUM_THREADS):
        yield


def takes(native: Mapping[str, Any], task: Task, y_train: np.ndarray) -> bool:
    """Whether glum fits this: an L1 part, and one linear predictor (regression, two classes)."""
    import numpy as np

    if native["penalty"] not in GLUM_PENALTIES:
        return False
    return task == "regression" or len(np.unique(y_train)) == 2


def glum_native(
    sklearn_native: Mapping[str, Any], spec: TrainingSpec, task: Task
) -> dict[str, Any]:
    """glum's parameters for the fit scikit-learn's native parameters describe, which it keeps."""
    classification = task == "classification"
    params = {
        "alpha": sklearn_native["strength"],
        "l1_ratio": sklearn_native["l1_ratio"],
        "family": "binomial" if classification else "normal",
        "link": "logit" if classification else "identity",
        "fit_intercept": True,
        "scale_predictors": False,
        "solver": "irls-cd",
        "selection": "cyclic",
        "gradient_tol": GLUM_GRADIENT_TOL,
        "max_iter": GLUM_MAX_ITER,
        "random_state": spec.seed,
    }
    weights = spec.class_weight if classification else None
    return {
        "family": "glum",
        "module": "glum",
        "penalty": sklearn_native["penalty"],
        "strength": sklearn_native["strength"],
        "l1_ratio": sklearn_native["l1_ratio"],
        "n_train": sklearn_native["n_train"],
        "estimator": "GeneralizedLinearRegressor",
        "formula": "alpha = strength (glum's data term is the mean loss)",
        "sample_weight": weights,
        "target": "1 for the second class, 0 for the first" if classification else "as is",
        "note": "fit(X, y, sample_weight=sklearn.utils.class_weight.compute_sample_weight("
        "sample_weight, y)) when sample_weight is set; the weights are copied into stored_as",
        "params": params,
        "stored_as": {
            "module": sklearn_native["module"],
            "estimator": sklearn_native["estimator"],
            "params": sklearn_native["params"],
        },
    }


def is_glum(native: Mapping[str, Any]) -> bool:
    return native.get("module") == "glum"


def glum_estimator(native: Mapping[str, Any]) -> Any:
    """The unfitted GeneralizedLinearRegressor the native parameters describe."""
    from glum import GeneralizedLinearRegressor

    return GeneralizedLinearRegressor(**native["params"])


def fit_glum(
    estimator: Any, native: Mapping[str, Any], X: np.ndarray, y: np.ndarray
) -> tuple[Any, list[str]]:
    """Fit glum; the scikit-learn estimator of ``stored_as`` holding its weights, and warnings."""
    import numpy as np
    from sklearn import linear_model
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.class_weight import compute_sample_weight

    classification = native["params"]["family"] == "binomial"
    classes = np.unique(y) if classification else None
    target = (y == classes[1]).astype(np.float64) if classes is not None else y
    weights = native.get("sample_weight")
    sample_weight = compute_sample_weight(weights, y) if weights is not None else None
    with warnings.catch_warnings(record=True) as caught, glum_threads():
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(np.asfortranarray(X), target, sample_weight=sample_weight)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    n_iter = int(estimator.n_iter_)
    if n_iter >= native["params"]["max_iter"] and not messages:
        messages.append(f"glum stopped after max_iter={n_iter} IRLS iterations")
    stored = native["stored_as"]
    model = getattr(linear_model, stored["estimator"])(**stored["params"])
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = float(estimator.intercept_)
    model.n_features_in_ = X.shape[1]
    if classes is not None:
        model.classes_ = classes
        model.coef_ = coef[None, :]
        model.intercept_ = np.array([intercept])
        model.n_iter_ = np.array([n_iter], dtype=np.int32)
    else:
        model.coef_ = coef
        model.intercept_ = intercept
        model.n_iter_ = n_iter
    return model, messages
