"""ReID retrieval metrics (CMC, mAP, mINP) and k-reciprocal re-ranking, vectorised in torch.

The protocol is the reference Market-1501 one (as in the Bag-of-Tricks / torchreid `eval_func`):
for each query, gallery entries with the same pid AND the same camera are removed; a query with no
remaining true match is skipped; AP is non-interpolated (mean of precision at each true match);
CMC[k] is 1 when the first true match is within the top k; mINP (Ye et al., "Deep learning for
person re-identification: a survey") is num_matches / rank of the hardest (last) match.

Everything runs on the device of its inputs, chunked over queries (or rows) so memory stays bounded:
no Python loop over the gallery, only over chunks.
"""

from __future__ import annotations

import torch

from mot_reid.errors import UserError

# Elements of a (rows x gallery) work tensor per chunk: ~4M keeps each chunk's temporaries < ~200 MB.
CHUNK_ELEMENTS = 1 << 22


def _as_tensor(x, device=None, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    return t.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else t


def compute_distance(qf, gf, metric: str = "euclidean") -> torch.Tensor:
    """(Q, G) distances: squared Euclidean, or cosine distance (1 - cos) on L2-normalised features."""
    qf, gf = _as_tensor(qf), _as_tensor(gf)
    gf = gf.to(qf.device, qf.dtype)
    if metric == "euclidean":
        dist = torch.addmm((qf * qf).sum(1, keepdim=True), qf, gf.T, alpha=-2.0)
        return dist.add_((gf * gf).sum(1)[None, :]).clamp_(min=0)
    if metric == "cosine":
        qn, gn = torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1)
        return 1.0 - qn @ gn.T
    raise UserError(f"unknown distance metric {metric!r}; choose euclidean or cosine")


def evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                     chunk_elements: int = CHUNK_ELEMENTS) -> dict:
    """CMC rank-1/5/10, mAP and mINP (fractions 0..1) of a (Q, G) distance matrix, on its device.

    Returns `rank1, rank5, rank10, mAP, mINP, cmc` (list of max_rank values) and `num_valid_queries`.
    Ties in distance keep gallery order (stable sort), so results are deterministic.
    """
    distmat = _as_tensor(distmat)
    device = distmat.device
    q_pids, g_pids = _as_tensor(q_pids, device, torch.long), _as_tensor(g_pids, device, torch.long)
    q_camids, g_camids = _as_tensor(q_camids, device, torch.long), _as_tensor(g_camids, device, torch.long)
    num_q, num_g = distmat.shape
    if (len(q_pids), len(g_pids)) != (num_q, num_g) or len(q_camids) != num_q or len(g_camids) != num_g:
        raise ValueError(f"distmat {tuple(distmat.shape)} does not match {len(q_pids)} queries / {len(g_pids)} gallery")
    max_rank = min(max_rank, num_g)

    first_hit = []  # 1-based rank (after removal) of the first true match, per valid query
    ap_parts, inp_parts = [], []
    rows = max(1, chunk_elements // max(num_g, 1))
    for start in range(0, num_q, rows):
        sl = slice(start, start + rows)
        order = torch.argsort(distmat[sl], dim=1, stable=True)
        pids, cams = g_pids[order], g_camids[order]
        same_pid = pids == q_pids[sl, None]
        keep = ~(same_pid & (cams == q_camids[sl, None]))
        hit = same_pid & keep
        num_hits = hit.sum(1)
        valid = num_hits > 0
        if not valid.any():
            continue
        hit, keep, num_hits = hit[valid], keep[valid], num_hits[valid]
        rank = keep.cumsum(1)  # 1-based position of each kept entry in the filtered ranking
        big = torch.iinfo(rank.dtype).max
        first_hit.append(torch.where(hit, rank, big).amin(1))
        last = torch.where(hit, rank, 0).amax(1)
        precision = hit.cumsum(1).double() / rank.clamp(min=1).double()
        ap_parts.append((precision * hit).sum(1) / num_hits)
        inp_parts.append(num_hits.double() / last.double())

    if not first_hit:
        raise UserError("no query has a true match in the gallery from another camera: nothing to evaluate")
    first = torch.cat(first_hit)
    num_valid = len(first)
    counts = torch.bincount(first.clamp(max=max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
    cmc = (counts.cumsum(0).double() / num_valid).cpu()
    result = {
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(5, max_rank) - 1]),
        "rank10": float(cmc[min(10, max_rank) - 1]),
        "mAP": float(torch.cat(ap_parts).mean()),
        "mINP": float(torch.cat(inp_parts).mean()),
        "cmc": cmc.tolist(),
        "num_valid_queries": num_valid,
    }
    return result


# ---------------------------------------------------------------------------------------------
# k-reciprocal re-ranking (Zhong et al., CVPR 2017), sparse and chunked.
#
# The reference code builds dense N x N matrices (N = queries + gallery: 19281 for Market, so
# ~1.5 GB per float32 matrix and a full N x N argsort). Only each row's k1+1 nearest neighbours
# enter the algorithm, and the encoding V has a few dozen non-zeros per row, so here:
#   pass 1 (row chunks): distances to all N, row maximum, top k1+1 neighbours;
#   k-reciprocal sets and their expansion, vectorised over rows;
#   V as a sparse matrix; local query expansion V <- mean of V over the k2 nearest rows (sparse mm);
#   Jaccard distance via an inverted index over V's columns (query chunks bounded by pair count);
#   final = (1 - lambda) * jaccard + lambda * row-normalised distance.
# Distances are squared Euclidean (clamped at 0) divided by each row's maximum, as in the reference
# (which divides by column maxima of a symmetric matrix and transposes). The reference stores V in
# float16; this keeps the features' dtype.
# ---------------------------------------------------------------------------------------------


def _sq_dist_rows(feats: torch.Tensor, sq: torch.Tensor, rows: slice, cols: slice = slice(None)) -> torch.Tensor:
    return torch.addmm(sq[rows, None], feats[rows], feats[cols].T, alpha=-2.0).add_(sq[None, cols]).clamp_(min=0)


def _reciprocal(nn: torch.Tensor, chunk: int) -> torch.Tensor:
    """mask[i, t]: node i is among the neighbours of its t-th neighbour nn[i, t] (nn: N x K)."""
    out = torch.empty(nn.shape, dtype=torch.bool, device=nn.device)
    for start in range(0, len(nn), chunk):
        block = nn[start:start + chunk]
        me = torch.arange(start, start + len(block), device=nn.device)
        out[start:start + chunk] = (nn[block] == me[:, None, None]).any(-1)
    return out


def _coalesce(rows, cols, values, n):
    """An (n, n) sparse COO matrix, duplicates summed, entries sorted by row then column."""
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()


def re_ranking(qf, gf, k1: int = 20, k2: int = 6, lambda_value: float = 0.3, device=None,
               dtype: torch.dtype | None = None, row_chunk: int = 1024, pair_budget: int = 1 << 23) -> torch.Tensor:
    """k-reciprocal re-ranked (Q, G) distances for query features `qf` and gallery features `gf`.

    Runs on `device` (default: that of `qf`) in memory bounded by `row_chunk` rows of N distances
    and `pair_budget` Jaccard pairs per step, plus the sparse encoding (~N x few hundred entries).
    """
    qf = _as_tensor(qf)
    device = torch.device(device) if device is not None else qf.device
    dtype = dtype or (qf.dtype if qf.is_floating_point() else torch.float32)
    feats = torch.cat([qf.to(device, dtype), _as_tensor(gf).to(device, dtype)])
    num_q, n = len(qf), len(feats)
    if num_q == 0 or n == num_q:
        raise UserError("re-ranking needs at least one query and one gallery image")
    if k1 < 1 or k2 < 1:
        raise UserError(f"re-ranking needs k1 >= 1 and k2 >= 1, got k1={k1}, k2={k2}")
    k = min(k1 + 1, n)
    k2 = min(k2, n)
    k_half = min(round(k1 / 2) + 1, n)  # round() is numpy.around's half-to-even, as in the reference
    sq = (feats * feats).sum(1)

    # Pass 1: row maxima and the nearest neighbours of every node (itself first): k1 + 1 for the
    # reciprocal sets, k2 for the query expansion (k2 may exceed k1 + 1).
    row_max = torch.empty(n, dtype=dtype, device=device)
    nearest = torch.empty(n, max(k, k2), dtype=torch.long, device=device)
    for start in range(0, n, row_chunk):
        rows = slice(start, start + row_chunk)
        dist = _sq_dist_rows(feats, sq, rows)
        row_max[rows] = dist.amax(1)
        nearest[rows] = torch.topk(dist, nearest.shape[1], dim=1, largest=False, sorted=True).indices
    row_max.clamp_(min=torch.finfo(dtype).tiny)
    nn = nearest[:, :k].contiguous()

    # k-reciprocal sets R(i) (within nn[i]) and, for the expansion, the half-size sets of each node.
    recip = _reciprocal(nn, row_chunk)
    nn_half = nn[:, :k_half].contiguous()
    recip_half = _reciprocal(nn_half, row_chunk)
    half_size = recip_half.sum(1)

    rows_i, cols_j, weights = [], [], []
    for start in range(0, n, row_chunk):
        block = slice(start, start + row_chunk)
        nb, rb = nn[block], recip[block]  # (C, k)
        cand_nb, cand_rec = nn_half[nb], recip_half[nb]  # (C, k, k_half): R_half of each neighbour
        # |R_half(c) ∩ R(i)| for each neighbour c of i
        in_r = ((cand_nb[..., None] == nb[:, None, None, :]) & rb[:, None, None, :]).any(-1) & cand_rec
        accept = rb & (in_r.sum(-1) > (2.0 / 3.0) * half_size[nb])
        # Members of the expanded set, n marking "not a member"; sorted so duplicates sit side by side.
        expansion = torch.where(accept[..., None] & cand_rec, cand_nb, n).flatten(1)
        members = torch.cat([torch.where(rb, nb, n), expansion], 1).sort(1).values
        fresh = members < n
        fresh[:, 1:] &= members[:, 1:] != members[:, :-1]
        r_local, c_pos = fresh.nonzero(as_tuple=True)
        i_idx, j_idx = r_local + start, members[r_local, c_pos]
        d = (sq[i_idx] + sq[j_idx] - 2.0 * (feats[i_idx] * feats[j_idx]).sum(1)).clamp_(min=0) / row_max[i_idx]
        rows_i.append(i_idx)
        cols_j.append(j_idx)
        weights.append(torch.exp(-d))
    rows_i, cols_j, weights = torch.cat(rows_i), torch.cat(cols_j), torch.cat(weights)
    row_sum = torch.zeros(n, dtype=dtype, device=device).index_add_(0, rows_i, weights)
    weights = weights / row_sum.clamp(min=torch.finfo(dtype).tiny)[rows_i]
    v = _coalesce(rows_i, cols_j, weights, n)

    if k2 != 1:
        # Local query expansion: row i becomes the mean of the rows of its k2 nearest neighbours.
        r, c = v.indices()
        val = v.values()
        row_start = torch.searchsorted(r, torch.arange(n + 1, device=device))
        sources = nearest[:, :k2].reshape(-1)
        counts = row_start[sources + 1] - row_start[sources]
        which = torch.arange(len(sources), device=device).repeat_interleave(counts)
        offset = torch.arange(len(which), device=device) - (counts.cumsum(0) - counts)[which]
        entry = row_start[sources[which]] + offset
        v = _coalesce(which // k2, c[entry], val[entry] / k2, n)

    return _jaccard_blend(v, feats, sq, row_max, num_q, lambda_value, pair_budget, row_chunk)


def _jaccard_blend(v, feats, sq, row_max, num_q, lambda_value, pair_budget, row_chunk) -> torch.Tensor:
    """(1 - lambda) * Jaccard(V_query, V_gallery) + lambda * normalised distance, by query chunks."""
    n, device, dtype = len(feats), feats.device, feats.dtype
    num_g = n - num_q
    r, c = v.indices()
    val = v.values()
    # Inverted index: gallery entries of V grouped by column.
    g_mask = r >= num_q
    g_rows, g_cols, g_vals = r[g_mask] - num_q, c[g_mask], val[g_mask]
    order = torch.argsort(g_cols, stable=True)
    g_rows, g_cols, g_vals = g_rows[order], g_cols[order], g_vals[order]
    col_count = torch.bincount(g_cols, minlength=n)
    col_start = torch.cumsum(col_count, 0) - col_count
    # Query entries (rows of V are sorted after coalesce) and the pairs each query row makes.
    q_mask = r < num_q
    q_rows, q_cols, q_vals = r[q_mask], c[q_mask], val[q_mask]
    q_entry_start = torch.searchsorted(q_rows, torch.arange(num_q + 1, device=device))
    pairs_per_entry = col_count[q_cols]
    pairs_cum = torch.cat([torch.zeros(1, dtype=torch.long, device=device), pairs_per_entry.cumsum(0)])
    pairs_at_row = pairs_cum[q_entry_start]  # cumulative pair count at each query row boundary

    out = torch.empty(num_q, num_g, dtype=dtype, device=device)
    start = 0
    while start < num_q:
        # Take as many query rows as fit in the pair budget (at least one) and in row_chunk.
        limit = pairs_at_row[start] + pair_budget
        stop = int(torch.searchsorted(pairs_at_row, limit, right=True)) - 1
        stop = min(max(stop, start + 1), start + row_chunk, num_q)
        e0, e1 = int(q_entry_start[start]), int(q_entry_start[stop])
        counts = pairs_per_entry[e0:e1]
        entry = torch.arange(e0, e1, device=device).repeat_interleave(counts)
        offset = torch.arange(len(entry), device=device) - (pairs_cum[entry] - pairs_cum[e0])
        g_idx = col_start[q_cols[entry]] + offset
        shared = torch.minimum(q_vals[entry], g_vals[g_idx])
        target = (q_rows[entry] - start) * num_g + g_rows[g_idx]
        overlap = torch.zeros((stop - start) * num_g, dtype=dtype, device=device).index_add_(0, target, shared)
        jaccard = 1.0 - overlap / (2.0 - overlap)
        dist = _sq_dist_rows(feats, sq, slice(start, stop), slice(num_q, n)) / row_max[start:stop, None]
        out[start:stop] = jaccard.view(stop - start, num_g) * (1.0 - lambda_value) + dist * lambda_value
        start = stop
    return out
