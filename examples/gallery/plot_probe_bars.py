"""
Learnability probes: which descriptors can CGCNN learn?
=======================================================

:func:`skcrystal.probes.probe_learnability` trains a model to predict each
human-designed descriptor of a :class:`~skcrystal.descriptors.DescriptorBank`
from the structure alone and cross-validates it, next to a composition-only
baseline (Magpie statistics and a random forest). A descriptor the graph
network predicts no better than the composition does is structural knowledge
it has not picked up. :func:`skcrystal.plotting.plot_probe_scores` draws the
table as grouped bars (the periodicity paper's Fig. 2).
"""
import os

from skcrystal import CGCNNRegressor
from skcrystal.datasets import load_perovskites
from skcrystal.descriptors import DescriptorBank
from skcrystal.plotting import plot_probe_scores
from skcrystal.probes import probe_learnability

FAST = os.environ.get("SKCRYSTAL_DOCS_FAST") == "1"
N_STRUCTURES = 60 if FAST else 150
EPOCHS = 3 if FAST else 20

# %%
# A few descriptors that vary across the bundled perovskites (they are all
# 5-atom cubic cells, so the crystal system and the number of atoms are
# constant and would only get "n/a" bars).
X, _ = load_perovskites(n=N_STRUCTURES, random_state=0)
bank = DescriptorBank(descriptors=["density", "vpa", "packing_frac", "a"])

# %%
# Three folds, the same for the graph network and the baseline. The
# crystal-system classification probe is switched off (``classifier=None``)
# since it is constant here.
table = probe_learnability(CGCNNRegressor(max_epochs=EPOCHS), X, bank=bank, cv=3,
                           classifier=None, random_state=0)
print(table[["descriptor", "model", "r2", "mae", "mae_mad"]].round(3).to_string(index=False))

# %%
# R² per descriptor and model; error bars are the spread over folds, the
# dashed line at 0.8 is the paper's "learned well".
fig, ax = plot_probe_scores(table, metric="r2",
                            title=f"R² over 3 folds, {len(X)} perovskites")
