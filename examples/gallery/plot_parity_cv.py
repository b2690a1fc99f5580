"""
Cross-validated CGCNN predictions: a parity plot
================================================

Fit :class:`~skcrystal.CGCNNRegressor` inside scikit-learn's
:func:`~sklearn.model_selection.cross_val_predict`, so every structure is
predicted by a model that never saw it, and compare the predictions with the
true heat of formation of the bundled perovskites. A mean predictor is the
reference any model has to beat.
"""
import os

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold, cross_val_predict

from skcrystal import CGCNNRegressor
from skcrystal.datasets import load_perovskites
from skcrystal.plotting import parity_plot

FAST = os.environ.get("SKCRYSTAL_DOCS_FAST") == "1"
N_STRUCTURES = 60 if FAST else 200
EPOCHS = 3 if FAST else 30

# %%
# Data: 5-atom ABX3 cells and their heat of formation (eV per cell).
X, y = load_perovskites(n=N_STRUCTURES, random_state=0)
print(f"{len(X)} structures, e.g. {X[0].composition.reduced_formula}: {y[0]:.3f} eV")

# %%
# Five-fold cross-validated predictions. The estimator is an ordinary
# scikit-learn regressor: ``cross_val_predict`` clones and fits it per fold.
# The graphs are built once and cached, so the folds share them.
cv = KFold(5, shuffle=True, random_state=0)
est = CGCNNRegressor(max_epochs=EPOCHS, random_state=0)
y_cv = cross_val_predict(est, X, y, cv=cv)
y_mean = cross_val_predict(DummyRegressor(), np.zeros((len(y), 1)), y, cv=cv)
print(f"CV MAE: CGCNN {np.abs(y_cv - y).mean():.3f} eV, "
      f"mean predictor {np.abs(y_mean - y).mean():.3f} eV")

# %%
# The parity plot draws the y = x line and writes R² and MAE in the corner.
fig, ax = parity_plot(y, y_cv, label="heat of formation", units="eV")
ax.set_title(f"CGCNN, 5-fold CV, {len(X)} perovskites", fontsize=9)
fig.tight_layout()
