"""Pooling atom features into one vector per crystal."""
from .scatter import scatter_max, scatter_mean, scatter_sum

__all__ = ["pool", "POOLINGS"]

POOLINGS = ("mean", "sum", "max")


def pool(x, node_graph, n_graphs, how="mean"):
    """Pool node rows into crystals.

    Parameters
    ----------
    x : Tensor, shape (n_nodes, d)
    node_graph : LongTensor, shape (n_nodes,)
    n_graphs : int
    how : {"mean", "sum", "max"}
        ``mean`` (CGCNN's normalised sum) for intensive targets, invariant to
        the choice of supercell; ``sum`` for extensive targets (scales with
        the number of atoms).

    Returns
    -------
    Tensor, shape (n_graphs, d)
    """
    if how == "mean":
        return scatter_mean(x, node_graph, n_graphs)
    if how == "sum":
        return scatter_sum(x, node_graph, n_graphs)
    if how == "max":
        return scatter_max(x, node_graph, n_graphs)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {how!r}")
