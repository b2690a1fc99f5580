"""The reference CGCNN code's data layout and model, for the benchmarks.

Written from the paper's Eq. 5 and the layout of txie-93/cgcnn (``data.py``
``collate_pool``, ``model.py`` ``ConvLayer`` / ``CrystalGraphConvNet``), with
its parameter names, so its published checkpoints load: dense per-crystal
neighbour tensors ``(N, M)``, one Linear on ``[v_i, v_j, u_ij]``, batch norm
on the ``N * M`` flattened edges, and mean pooling by a Python loop over the
crystals of a batch. ``bench_training.py`` trains it; ``bench_predict.py``
predicts with it.
"""
import numpy as np
import torch
from torch import nn

__all__ = ["collate_pool", "ConvLayer", "CrystalGraphConvNet"]


def collate_pool(dataset_list):
    """The reference ``collate_pool``: concatenate, shift indices, list crystals."""
    batch_atom_fea, batch_nbr_fea, batch_nbr_fea_idx = [], [], []
    crystal_atom_idx, batch_target = [], []
    base_idx = 0
    for (atom_fea, nbr_fea, nbr_fea_idx), target in dataset_list:
        n_i = atom_fea.shape[0]
        batch_atom_fea.append(atom_fea)
        batch_nbr_fea.append(nbr_fea)
        batch_nbr_fea_idx.append(nbr_fea_idx + base_idx)
        crystal_atom_idx.append(torch.LongTensor(np.arange(n_i) + base_idx))
        batch_target.append(target)
        base_idx += n_i
    return ((torch.cat(batch_atom_fea, dim=0), torch.cat(batch_nbr_fea, dim=0),
             torch.cat(batch_nbr_fea_idx, dim=0), crystal_atom_idx),
            torch.stack(batch_target, dim=0))


class ConvLayer(nn.Module):
    """Eq. 5 in the reference layout: dense (N, M) neighbour tensors."""

    def __init__(self, atom_fea_len, nbr_fea_len):
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.sigmoid = nn.Sigmoid()
        self.softplus1 = nn.Softplus()
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)
        self.softplus2 = nn.Softplus()

    def forward(self, atom_in_fea, nbr_fea, nbr_fea_idx):
        N, M = nbr_fea_idx.shape
        atom_nbr_fea = atom_in_fea[nbr_fea_idx, :]
        total_nbr_fea = torch.cat(
            [atom_in_fea.unsqueeze(1).expand(N, M, self.atom_fea_len), atom_nbr_fea, nbr_fea],
            dim=2)
        total_gated_fea = self.fc_full(total_nbr_fea)
        total_gated_fea = self.bn1(total_gated_fea.view(-1, self.atom_fea_len * 2)).view(
            N, M, self.atom_fea_len * 2)
        nbr_filter, nbr_core = total_gated_fea.chunk(2, dim=2)
        nbr_sumed = torch.sum(self.sigmoid(nbr_filter) * self.softplus1(nbr_core), dim=1)
        return self.softplus2(atom_in_fea + self.bn2(nbr_sumed))


class CrystalGraphConvNet(nn.Module):
    """The reference ``CrystalGraphConvNet``: regression or classification, ``n_h`` layers."""

    def __init__(self, orig_atom_fea_len, nbr_fea_len, atom_fea_len=64, n_conv=3,
                 h_fea_len=128, n_h=1, classification=False):
        super().__init__()
        self.classification = classification
        self.embedding = nn.Linear(orig_atom_fea_len, atom_fea_len)
        self.convs = nn.ModuleList(ConvLayer(atom_fea_len, nbr_fea_len) for _ in range(n_conv))
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        self.conv_to_fc_softplus = nn.Softplus()
        if n_h > 1:
            self.fcs = nn.ModuleList(nn.Linear(h_fea_len, h_fea_len) for _ in range(n_h - 1))
            self.softpluses = nn.ModuleList(nn.Softplus() for _ in range(n_h - 1))
        self.fc_out = nn.Linear(h_fea_len, 2 if classification else 1)
        if classification:
            self.logsoftmax, self.dropout = nn.LogSoftmax(dim=1), nn.Dropout()

    def forward(self, atom_fea, nbr_fea, nbr_fea_idx, crystal_atom_idx):
        atom_fea = self.embedding(atom_fea)
        for conv in self.convs:
            atom_fea = conv(atom_fea, nbr_fea, nbr_fea_idx)
        # the reference pools with a Python loop over the crystals of the batch
        crys_fea = torch.cat([torch.mean(atom_fea[idx], dim=0, keepdim=True)
                              for idx in crystal_atom_idx], dim=0)
        crys_fea = self.conv_to_fc_softplus(self.conv_to_fc(self.conv_to_fc_softplus(crys_fea)))
        if self.classification:
            crys_fea = self.dropout(crys_fea)
        for fc, softplus in zip(getattr(self, "fcs", []), getattr(self, "softpluses", [])):
            crys_fea = softplus(fc(crys_fea))
        out = self.fc_out(crys_fea)
        return self.logsoftmax(out) if self.classification else out
