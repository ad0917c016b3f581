"""CMC / mAP / mINP against a brute-force per-query reference and a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mot_reid.errors import UserError
from mot_reid.reid.metrics import compute_distance, evaluate_ranking


def brute_force(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The reference Market protocol, one query at a time, written plainly."""
    max_rank = min(max_rank, distmat.shape[1])
    cmcs, aps, inps = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        ranked = [(g_pids[g], g_camids[g]) for g in order
                  if not (g_pids[g] == q_pids[q] and g_camids[g] == q_camids[q])]
        hits = [pid == q_pids[q] for pid, _ in ranked]
        if not any(hits):
            continue
        positions = [i + 1 for i, h in enumerate(hits) if h]  # 1-based ranks of true matches
        cmcs.append([1.0 if positions[0] <= k else 0.0 for k in range(1, max_rank + 1)])
        aps.append(np.mean([(m + 1) / pos for m, pos in enumerate(positions)]))
        inps.append(len(positions) / positions[-1])
    cmc = np.mean(cmcs, axis=0)
    return {"cmc": cmc, "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps)), "num_valid_queries": len(aps)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_data(seed):
    rng = np.random.default_rng(seed)
    num_q, num_g, num_ids, num_cams = 40, 300, 25, 4
    q_pids, g_pids = rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g)
    q_cams, g_cams = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    g_pids[:5] = 999  # a few distractors, and one query with no valid match
    q_pids[0], q_cams[0] = 998, 0
    g_pids[5], g_cams[5] = 998, 0
    # Features that carry identity, so rankings are neither perfect nor random.
    centers = rng.normal(size=(1000, 16))
    qf = centers[q_pids] + rng.normal(scale=1.5, size=(num_q, 16))
    gf = centers[g_pids] + rng.normal(scale=1.5, size=(num_g, 16))
    dist = compute_distance(torch.tensor(qf), torch.tensor(gf))
    expected = brute_force(dist.numpy(), q_pids, g_pids, q_cams, g_cams)
    # A tiny chunk size exercises the chunking path too.
    for chunk in (10**7, 3 * num_g):
        got = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, chunk_elements=chunk)
        assert got["num_valid_queries"] == expected["num_valid_queries"] < num_q
        np.testing.assert_allclose(got["cmc"], expected["cmc"], atol=1e-12)
        assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
        assert got["mINP"] == pytest.approx(expected["mINP"], abs=1e-12)
        assert got["rank1"] == expected["cmc"][0] and got["rank5"] == expected["cmc"][4]
        assert got["rank10"] == expected["cmc"][9]
        assert 0.05 < got["mAP"] < 0.95


def test_hand_made_case():
    # Query 0 (pid 1, cam 0). Gallery ranked by distance (index: pid, cam):
    #   g0 (1, 0) same pid+cam -> removed;  g1 (2, 1) miss;  g2 (1, 1) hit at rank 2;
    #   g3 (3, 1) miss;  g4 (1, 2) hit at rank 4.
    # AP = (1/2 + 2/4) / 2 = 0.5; first hit at rank 2; INP = 2 / 4 = 0.5.
    # Query 1 (pid 2, cam 2): g1 (2, 1) is nearest -> rank 1; AP = 1; INP = 1.
    # Query 2 (pid 3, cam 1): its only gallery image g3 has the same camera -> skipped.
    dist = torch.tensor([
        [0.1, 0.2, 0.3, 0.4, 0.5],
        [0.9, 0.1, 0.5, 0.6, 0.7],
        [0.5, 0.4, 0.3, 0.1, 0.2],
    ])
    g_pids, g_cams = [1, 2, 1, 3, 1], [0, 1, 1, 1, 2]
    got = evaluate_ranking(dist, [1, 2, 3], g_pids, [0, 2, 1], g_cams, max_rank=4)
    assert got["num_valid_queries"] == 2
    assert got["cmc"] == pytest.approx([0.5, 1.0, 1.0, 1.0])
    assert got["rank1"] == 0.5 and got["rank5"] == 1.0 and got["rank10"] == 1.0
    assert got["mAP"] == pytest.approx(0.75)
    assert got["mINP"] == pytest.approx(0.75)


def test_ties_keep_gallery_order_and_numpy_inputs():
    dist = np.zeros((1, 3))
    got = evaluate_ranking(dist, np.array([5]), np.array([7, 5, 5]), np.array([0]), np.array([1, 1, 2]))
    # Stable order: miss, hit, hit -> AP = (1/2 + 2/3) / 2.
    assert got["mAP"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert got["rank1"] == 0.0 and got["mINP"] == pytest.approx(2 / 3)


def test_no_valid_query_is_user_error():
    with pytest.raises(UserError, match="no query"):
        evaluate_ranking(torch.zeros(1, 2), [1], [1, 2], [0], [0, 0])


def test_distances():
    q = torch.nn.functional.normalize(torch.randn(4, 8, dtype=torch.float64), dim=1)
    g = torch.nn.functional.normalize(torch.randn(6, 8, dtype=torch.float64), dim=1)
    eu = compute_distance(q, g)
    assert torch.allclose(eu, torch.cdist(q, g) ** 2, atol=1e-12)
    cos = compute_distance(q, g, metric="cosine")
    assert torch.allclose(cos, 1 - q @ g.T, atol=1e-12)
    assert torch.allclose(eu, 2 * cos, atol=1e-12)  # on unit vectors ||q - g||^2 = 2 (1 - cos)
    assert compute_distance(q, q).diagonal().abs().max() < 1e-12
    with pytest.raises(UserError):
        compute_distance(q, g, metric="manhattan")
