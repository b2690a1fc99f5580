"""Figures for probe tables and predictions (matplotlib, imported on first use).

* :func:`plot_probe_scores` -- grouped bars of R2 (or accuracy, MAE/MAD)
  per descriptor and model, the periodicity paper's Fig. 2.
* :func:`parity_plot` -- predicted vs. true values with the y = x line.
* :func:`plot_importance` -- bars of :func:`skcrystal.probes.representation_importance`
  coloured by group, the paper's Fig. 4a-c.

Each function draws on ``ax`` when given (else on a new figure) and returns
``(fig, ax)``; nothing is shown or saved. The backend is left to the user
(``MPLBACKEND=Agg`` for scripts without a display).
"""
from __future__ import annotations

import numpy as np

__all__ = ["plot_probe_scores", "parity_plot", "plot_importance"]

_METRICS = {"r2": ("regression", "R$^2$"), "mae_mad": ("regression", "MAE/MAD"),
            "accuracy": ("classification", "accuracy")}


def _axes(ax, figsize):
    import matplotlib.pyplot as plt
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    return fig, ax


def _check_table(df, columns, source):
    """``df`` must be a DataFrame with ``columns`` (the output of ``source``)."""
    import pandas as pd
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be the DataFrame returned by {source}, got "
                        f"{type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"df has no column(s) {missing} (columns: {list(df.columns)}); "
                         f"pass the DataFrame returned by {source}")


def plot_probe_scores(df, metric="r2", ax=None, models=None, descriptors=None,
                      title=None, ylim=None, figsize=None):
    """Grouped bar chart of a probe metric per descriptor and model (Fig. 2).

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`skcrystal.probes.probe_learnability`.
    metric : {"r2", "mae_mad", "accuracy"}
        "accuracy" plots the classification probes (crystal system).
    ax : matplotlib Axes, optional
    models, descriptors : list of str, optional
        Which ones and in which order (default: order of appearance).
    title : str, optional
    ylim : (float, float), optional
        Default for R2 and accuracy: (max(min(0, lowest bar), -1), 1.05);
        bars cut by the lower limit are labelled with their value.
    figsize : (float, float), optional
        Default grows with the number of descriptors.

    Returns
    -------
    fig, ax
        Bars carry error bars (std over folds) where the table has them;
        a descriptor without a value (constant on the data) is labelled
        "n/a" at the axis.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
    task, label = _METRICS[metric]
    _check_table(df, ["descriptor", "model", metric], "skcrystal.probes.probe_learnability")
    sub = df[df["task"] == task] if "task" in df.columns else df
    if descriptors is None:
        descriptors = list(dict.fromkeys(sub["descriptor"]))
    if models is None:
        models = list(dict.fromkeys(sub["model"]))
    if not descriptors or not models:
        raise ValueError(f"no {task} rows to plot for metric={metric!r}")
    fig, ax = _axes(ax, figsize or (max(4.0, 0.55 * len(descriptors) * max(len(models), 1)
                                        / 2 + 2), 3.6))
    width = 0.8 / len(models)
    x = np.arange(len(descriptors))
    std_col = f"{metric}_std" if f"{metric}_std" in sub.columns else None
    lowest = 0.0
    for k, model in enumerate(models):
        rows = sub[sub["model"] == model].set_index("descriptor")
        vals = np.array([rows[metric].get(d, np.nan) for d in descriptors], dtype=float)
        err = (np.array([rows[std_col].get(d, np.nan) for d in descriptors], dtype=float)
               if std_col else None)
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, np.nan_to_num(vals), width, label=model,
               yerr=None if err is None else np.nan_to_num(err), capsize=2)
        for p, v in zip(pos, vals):
            if not np.isfinite(v):
                ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        if np.isfinite(vals).any():
            lowest = min(lowest, np.nanmin(vals))
    ax.set_xticks(x)
    ax.set_xticklabels(descriptors, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(label)
    if ylim is not None:
        ax.set_ylim(*ylim)
    elif metric in ("r2", "accuracy"):
        # a badly negative R2 would flatten every other bar, so cut at -1 and label
        ax.set_ylim(max(min(lowest * 1.05, 0.0), -1.0), 1.05)
    floor = ax.get_ylim()[0]
    for k, model in enumerate(models):
        rows = sub[sub["model"] == model].set_index("descriptor")
        for i, d in enumerate(descriptors):
            v = float(rows[metric].get(d, np.nan))
            if np.isfinite(v) and v < floor:
                ax.text(x[i] - 0.4 + width * (k + 0.5), floor, f"{v:.1f}", ha="center",
                        va="bottom", fontsize=7, rotation=90, color="w")
    ax.axhline(0, color="k", lw=0.6)
    if metric == "r2":
        ax.axhline(0.8, color="grey", lw=0.6, ls="--")  # the paper's "learned well" line
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig, ax


def parity_plot(y_true, y_pred, ax=None, label=None, units=None, annotate=True,
                figsize=(3.6, 3.6), **scatter_kw):
    """Predicted vs. true values with the y = x line.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,)
    ax : matplotlib Axes, optional
    label : str, optional
        Quantity name for the axis labels (e.g. "a").
    units : str, optional
        Appended to the axis labels (e.g. "Å").
    annotate : bool, default True
        Write R2 and MAE in the corner.
    **scatter_kw
        Passed to ``ax.scatter`` (defaults: s=8, alpha=0.6).

    Returns
    -------
    fig, ax
    """
    from sklearn.metrics import mean_absolute_error, r2_score
    from ._validation import as_numbers
    t, p = as_numbers(y_true, "y_true").ravel(), as_numbers(y_pred, "y_pred").ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {t.size} vs {p.size}")
    finite = np.isfinite(t) & np.isfinite(p)
    if not finite.any():
        raise ValueError(f"no pair of finite values to plot among the {t.size} given")
    if not finite.all():
        import warnings
        bad = np.flatnonzero(~finite)
        warnings.warn(f"parity_plot: {bad.size} of {t.size} pairs hold NaN or inf (rows "
                      f"{bad[:10].tolist()}{' ...' if bad.size > 10 else ''}); they are "
                      "not drawn, nor counted in R2 and MAE", UserWarning, stacklevel=2)
    fig, ax = _axes(ax, figsize)
    scatter_kw.setdefault("s", 8)
    scatter_kw.setdefault("alpha", 0.6)
    ax.scatter(t, p, **scatter_kw)
    lo = min(t[finite].min(), p[finite].min())
    hi = max(t[finite].max(), p[finite].max())
    pad = 0.03 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    name = label or "y"
    unit = f" ({units})" if units else ""
    ax.set_xlabel(f"true {name}{unit}")
    ax.set_ylabel(f"predicted {name}{unit}")
    if annotate and finite.sum() >= 2:
        ax.text(0.04, 0.96, f"R$^2$ = {r2_score(t[finite], p[finite]):.3f}\n"
                f"MAE = {mean_absolute_error(t[finite], p[finite]):.3g}{' ' + units if units else ''}",
                transform=ax.transAxes, va="top", fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_importance(df, top=20, ax=None, figsize=None):
    """Bars of feature importance coloured by group (Fig. 4a-c).

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`skcrystal.probes.representation_importance`.
    top : int or None
        Most important features shown (None: all).

    Returns
    -------
    fig, ax
    """
    _check_table(df, ["feature", "importance", "group"],
                 "skcrystal.probes.representation_importance")
    sub = df.sort_values("importance", ascending=False).head(top) if top else df
    fig, ax = _axes(ax, figsize or (max(4.0, 0.3 * len(sub) + 1.5), 3.2))
    colours = {"learned": "tab:blue", "descriptor": "tab:orange"}
    ax.bar(np.arange(len(sub)), sub["importance"],
           color=[colours.get(g, "tab:grey") for g in sub["group"]])
    ax.set_xticks(np.arange(len(sub)))
    ax.set_xticklabels(sub["feature"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("feature importance")
    totals = df.groupby("group")["importance"].sum()
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=colours.get(g, "tab:grey"),
                             label=f"{g} (total {totals[g]:.2f})") for g in totals.index],
              fontsize=8, frameon=False)
    fig.tight_layout()
    return fig, ax
