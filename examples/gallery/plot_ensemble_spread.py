"""
Uncertainty from an ensemble: spread of the members
===================================================

:class:`skcrystal.EnsembleRegressor` trains clones of a regressor that differ
only in their random seed. ``predict(X, return_std=True)`` returns the mean of
the members and their standard deviation, a cheap estimate of model
uncertainty: the members agree where the training data constrain them and
disagree away from it.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

from skcrystal import CGCNNRegressor, EnsembleRegressor
from skcrystal.datasets import load_perovskites

FAST = os.environ.get("SKCRYSTAL_DOCS_FAST") == "1"
N_STRUCTURES = 80 if FAST else 300
EPOCHS = 3 if FAST else 30
N_MEMBERS = 3 if FAST else 5

# %%
# Train on the first part of the structures, test on the rest.
X, y = load_perovskites(n=N_STRUCTURES, random_state=1)
n_train = int(0.75 * len(X))
X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

ens = EnsembleRegressor(CGCNNRegressor(max_epochs=EPOCHS), n_estimators=N_MEMBERS,
                        random_state=0)
ens.fit(X_train, y_train)
mean, std = ens.predict(X_test, return_std=True)
err = np.abs(mean - y_test)
print(f"test MAE {err.mean():.3f} eV; mean member spread {std.mean():.3f} eV")

# %%
# Each test structure: predicted value with the members' spread as an error
# bar, against the true value; and the absolute error against the spread.
# A useful spread grows with the error.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 3.4))
ax1.errorbar(y_test, mean, yerr=std, fmt="o", ms=3, alpha=0.7, elinewidth=0.8)
lo, hi = min(y_test.min(), mean.min()), max(y_test.max(), mean.max())
ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
ax1.set_xlabel("true heat of formation (eV)")
ax1.set_ylabel("ensemble mean ± std (eV)")
ax2.scatter(std, err, s=10, alpha=0.7)
ax2.set_xlabel("member spread (eV)")
ax2.set_ylabel("absolute error (eV)")
fig.suptitle(f"{N_MEMBERS}-member CGCNN ensemble, {len(X_test)} test perovskites",
             fontsize=9)
fig.tight_layout()
