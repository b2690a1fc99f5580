"""
Tuning with GridSearchCV over ``module__`` parameters
=====================================================

Model parameters are set through skorch's ``module__`` prefix and optimizer
parameters through ``optimizer__`` (or the shortcut ``lr``), so
:class:`~sklearn.model_selection.GridSearchCV` searches them like any other
scikit-learn hyper-parameter. Here: the number of graph convolutions of CGCNN
and the learning rate, scored by the scale-free MAE/MAD
(:data:`skcrystal.metrics.mae_mad_scorer`: 1 is a mean predictor, lower is
better; the scorer returns its negative).
"""
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV

from skcrystal import CGCNNRegressor
from skcrystal.datasets import load_perovskites
from skcrystal.metrics import mae_mad_scorer

FAST = os.environ.get("SKCRYSTAL_DOCS_FAST") == "1"
N_STRUCTURES = 60 if FAST else 200
EPOCHS = 3 if FAST else 20

X, y = load_perovskites(n=N_STRUCTURES, random_state=2)

# %%
# A 2 x 2 grid, three folds.
grid = GridSearchCV(
    CGCNNRegressor(max_epochs=EPOCHS, random_state=0),
    param_grid={"module__n_conv": [1, 3], "lr": [1e-3, 3e-3]},
    scoring=mae_mad_scorer, cv=3)
grid.fit(X, y)
print("best:", grid.best_params_, f"MAE/MAD {-grid.best_score_:.3f}")

# %%
# ``cv_results_`` is a plain dict: one bar per grid point.
res = pd.DataFrame(grid.cv_results_)
labels = [f"n_conv={p['module__n_conv']}\nlr={p['lr']:g}" for p in res["params"]]
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.bar(np.arange(len(res)), -res["mean_test_score"], yerr=res["std_test_score"], capsize=3)
ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="mean predictor")
ax.set_xticks(np.arange(len(res)))
ax.set_xticklabels(labels, fontsize=8)
ax.set_ylabel("CV MAE/MAD (lower is better)")
ax.legend(frameon=False, fontsize=8)
fig.tight_layout()
