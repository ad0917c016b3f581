"""k-reciprocal re-ranking: the chunked sparse implementation against a plain dense one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mot_reid.errors import UserError
from mot_reid.reid.metrics import compute_distance, evaluate_ranking, re_ranking


def dense_re_ranking(qf, gf, k1, k2, lambda_value):
    """Zhong et al.'s algorithm written directly on dense N x N numpy arrays, one row at a time."""
    feats = np.concatenate([qf, gf]).astype(np.float64)
    num_q, n = len(qf), len(feats)
    sq = (feats**2).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * feats @ feats.T, 0)
    dist = dist / dist.max(axis=1, keepdims=True)
    rank = np.argsort(dist, axis=1, kind="stable")
    half = int(np.around(k1 / 2)) + 1

    def reciprocal(i, kk):
        forward = rank[i, : kk]
        return [j for j in forward if i in rank[j, : kk]]

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1 + 1)
        expansion = set(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                expansion |= set(rc)
        idx = np.array(sorted(expansion))
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jaccard = np.zeros((num_q, n))
    for i in range(num_q):
        overlap = np.minimum(v[i][None, :], v).sum(1)
        jaccard[i] = 1 - overlap / (2 - overlap)
    final = jaccard * (1 - lambda_value) + dist[:num_q] * lambda_value
    return final[:, num_q:]


def clustered(rng, num, ids, dim=8, noise=0.6):
    pids = rng.integers(0, ids, num)
    centers = np.random.default_rng(123).normal(size=(ids, dim))
    return centers[pids] + rng.normal(scale=noise, size=(num, dim)), pids


@pytest.mark.parametrize("k1,k2,lam,num_q,num_g", [(20, 6, 0.3, 30, 120), (5, 1, 0.5, 12, 50), (7, 3, 0.0, 1, 40),
                                                   (3, 6, 0.3, 10, 40), (5, 10, 0.3, 10, 40)])  # k2 > k1 + 1
def test_matches_dense_implementation(k1, k2, lam, num_q, num_g):
    rng = np.random.default_rng(k1 + num_q)
    qf, _ = clustered(rng, num_q, 15)
    gf, _ = clustered(rng, num_g, 15)
    expected = dense_re_ranking(qf, gf, k1, k2, lam)
    # Small chunks and a small pair budget force several chunks in every pass.
    got = re_ranking(torch.tensor(qf), torch.tensor(gf), k1, k2, lam, dtype=torch.float64, row_chunk=7,
                     pair_budget=500)
    assert got.shape == (num_q, num_g) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    default = re_ranking(torch.tensor(qf), torch.tensor(gf), k1, k2, lam, dtype=torch.float64)
    np.testing.assert_allclose(default.numpy(), expected, rtol=0, atol=1e-12)


def test_float32_close_to_dense_and_helps_on_clustered_data():
    rng = np.random.default_rng(7)
    qf, qp = clustered(rng, 40, 20, dim=16, noise=1.0)
    gf, gp = clustered(rng, 200, 20, dim=16, noise=1.0)
    qc, gc = np.zeros(40, dtype=int), np.ones(200, dtype=int)
    got = re_ranking(torch.tensor(qf, dtype=torch.float32), torch.tensor(gf, dtype=torch.float32))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), dense_re_ranking(qf, gf, 20, 6, 0.3), atol=1e-5)
    plain = evaluate_ranking(compute_distance(torch.tensor(qf), torch.tensor(gf)), qp, gp, qc, gc)
    reranked = evaluate_ranking(got, qp, gp, qc, gc)
    assert reranked["mAP"] > plain["mAP"]


def test_bad_neighbour_counts_are_user_errors():
    qf, gf = torch.randn(3, 4), torch.randn(5, 4)
    for k1, k2 in ((0, 6), (20, 0)):
        with pytest.raises(UserError, match="k1 >= 1 and k2 >= 1"):
            re_ranking(qf, gf, k1, k2)
