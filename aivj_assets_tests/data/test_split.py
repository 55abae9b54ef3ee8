"""Row identity and the deterministic splits."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from aivj_assets.data.split import (
    GATE,
    SELECTION,
    TRAIN,
    corpus_masks,
    corpus_part,
    judge_mask,
    row_hash,
    row_hashes,
)


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 8)).astype(np.float32), rng.standard_normal((n, 5)).astype(np.float32),
            rng.integers(0, 2, n))


def test_hash_is_per_row_content_whatever_the_batch() -> None:
    audio, preset, labels = _rows(10_000)  # more than one internal block of rows
    whole = row_hashes(audio, preset, labels)
    assert len(set(whole)) == len(whole) and all(len(h) == 16 for h in whole)
    pieces = [h for s in range(0, 10_000, 333) for h in row_hashes(audio[s:s + 333], preset[s:s + 333], labels[s:s + 333])]
    assert pieces == whole
    assert row_hash(audio[42], preset[42], int(labels[42])) == whole[42]
    assert row_hashes(audio[:0], preset[:0], labels[:0]) == []
    assert row_hashes(audio, preset, labels.reshape(-1, 1)) == whole  # a label column as a matrix


M64 = (1 << 64) - 1


def _splitmix(h: int) -> int:
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & M64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


def _reference_hash(audio: np.ndarray, preset: np.ndarray, label: int) -> str:
    """The row hash as it is defined, one row in plain Python: every 32-bit word (float32 bits,
    then the label) plus a key of its position and the vector lengths, mixed, summed, mixed."""
    words = [*np.asarray(audio, "<f4").view("<u4").tolist(), *np.asarray(preset, "<f4").view("<u4").tolist(), int(label != 0)]
    seed = (len(audio) << 20) ^ (len(preset) << 4)
    total = sum(_splitmix(w + (_splitmix((j + 1) * 0x9E3779B97F4A7C15 & M64) ^ seed)) for j, w in enumerate(words))
    return f"{_splitmix(total & M64):016x}"


def test_hash_is_the_defined_function_and_never_changes() -> None:
    """Stored partitions and every split rest on these values: the fast block-wise hash equals
    the definition row by row (across its blocks, a short last block included), and two
    pinned rows keep the values they have had since the first store."""
    audio, preset, labels = _rows(2_500, seed=4)
    fast = row_hashes(audio, preset, labels)
    assert all(fast[i] == _reference_hash(audio[i], preset[i], labels[i]) for i in range(0, 2_500, 7))
    assert fast[-1] == _reference_hash(audio[-1], preset[-1], labels[-1])
    a, p = np.arange(32, dtype=np.float32) / 7, -np.arange(24, dtype=np.float32) / 3
    assert row_hash(a, p, 1) == _reference_hash(a, p, 1) == "28229e836f7b967f"
    assert row_hash(a[:3], p[:2], 0) == "5fcca6b5bf1d56ab"


def test_hash_changes_with_label_order_and_vector_boundary() -> None:
    audio, preset, labels = _rows(3)
    base = row_hashes(audio, preset, labels)
    flipped = labels.copy()
    flipped[0] ^= 1
    assert row_hashes(audio, preset, flipped)[0] != base[0]
    swapped = audio.copy()
    swapped[1, [0, 1]] = swapped[1, [1, 0]]
    assert row_hashes(swapped, preset, labels)[1] != base[1]
    # The same 13 numbers split 9 + 4 instead of 8 + 5 are another row.
    joined = np.concatenate([audio, preset], axis=1)
    assert row_hashes(joined[:, :9], joined[:, 9:], labels)[2] != base[2]


def test_three_parts_and_the_elite_halves_follow_the_two_halves_of_the_hash() -> None:
    hashes = row_hashes(*_rows(20_000, seed=1))
    part, judge = corpus_part(hashes, 0.05, 0.1), judge_mask(hashes, 0.5)
    gate, selection, train = part == GATE, part == SELECTION, part == TRAIN
    assert (gate.astype(int) + selection + train == 1).all()  # disjoint, and every row in one part
    assert abs(gate.mean() - 0.1) < 0.01 and abs(selection.mean() - 0.05) < 0.01 and abs(judge.mean() - 0.5) < 0.02
    assert abs((gate & judge).mean() - 0.05) < 0.01  # the corpus parts and the elite halves are independent
    unit = np.array([int(h[:8], 16) / 2**32 for h in hashes])
    assert (gate == (unit < 0.1)).all() and (selection == ((unit >= 0.1) & (unit < 0.15))).all()


def test_parts_are_stable_as_partitions_are_added() -> None:
    """Growing the corpus never moves an existing row to another part, whatever arrives, in any order."""
    first = row_hashes(*_rows(5_000, seed=1))
    later = row_hashes(*_rows(3_000, seed=2)) + row_hashes(*_rows(2_000, seed=3))
    alone = corpus_part(first, 0.05, 0.1)
    assert (corpus_part(first + later, 0.05, 0.1)[: len(first)] == alone).all()
    assert (corpus_part(later + first, 0.05, 0.1)[len(later):] == alone).all()
    assert (corpus_part(first[::-1], 0.05, 0.1) == alone[::-1]).all()


def test_corpus_masks_keep_elite_rows_out_of_what_they_must_not_touch() -> None:
    """An elite judging row in the corpus never trains or selects; an elite warm-up row never selects
    or judges; the three masks stay disjoint."""
    hashes = row_hashes(*_rows(4_000, seed=6))
    part = corpus_part(hashes, 0.05, 0.1)
    pick = {p: [h for h, q in zip(hashes, part, strict=True) if q == p][:2] for p in (TRAIN, SELECTION, GATE)}
    judge = pa.array([pick[TRAIN][0], pick[SELECTION][0], pick[GATE][0]])
    warm = pa.array([pick[TRAIN][1], pick[SELECTION][1], pick[GATE][1]])
    train, selection, gate = corpus_masks(pa.chunked_array([hashes]), 0.05, 0.1, warm, judge)
    index = {h: i for i, h in enumerate(hashes)}
    assert not (train & selection).any() and not (train & gate).any() and not (selection & gate).any()
    assert not train[[index[h] for h in judge.to_pylist()]].any() and not selection[[index[h] for h in judge.to_pylist()]].any()
    assert gate[index[pick[GATE][0]]]  # an elite judging row on the gate side still judges
    assert not selection[[index[h] for h in warm.to_pylist()]].any() and not gate[[index[h] for h in warm.to_pylist()]].any()
    assert train[index[pick[TRAIN][1]]]  # an elite warm-up row on the training side still trains
    # Out of every part: the judging rows on the training and selection sides, the warm-up rows
    # on the selection and gate sides.
    assert train.sum() + selection.sum() + gate.sum() == len(hashes) - 4


def test_drift_summary_counts_each_feature_like_searchsorted() -> None:
    """The all-features-at-once binning equals numpy's searchsorted per feature."""
    from aivj_assets.data.drift import BINS, SAMPLE_ROWS, decile_edges, summarise

    audio, preset, _ = _rows(30_000, seed=3)  # more than SAMPLE_ROWS: the evenly spaced sample
    edges = decile_edges(audio[:5000], preset[:5000])
    step = -(-30_000 // SAMPLE_ROWS)
    # Values on and just beside each edge (edges are float64, values float32): same bins.
    for k, edge in enumerate(edges[0]):
        e32 = np.float32(edge)
        audio[step * 3 * k : step * 3 * (k + 1) : step, 0] = [np.nextafter(e32, -np.inf), e32, np.nextafter(e32, np.inf)]
    got = summarise(audio, preset, edges)
    features = np.concatenate([audio[::step], preset[::step]], axis=1)
    want = [np.bincount(np.searchsorted(np.asarray(e), features[:, j], side="right"), minlength=BINS).tolist()
            for j, e in enumerate(edges)]
    assert step > 1 and len(features) <= SAMPLE_ROWS
    assert got == {"rows": len(features), "counts": want}


def test_drift_edges_are_the_deciles_of_the_sampled_features() -> None:
    """Sorting in float32 first gives exactly numpy's float64 deciles of the evenly spaced sample."""
    from aivj_assets.data.drift import BINS, SAMPLE_ROWS, decile_edges

    audio, preset, _ = _rows(9_000, seed=4)
    audio[::7, 1] = 0.25  # ties, as rounded exports have
    step = -(-9_000 // SAMPLE_ROWS)
    sample = np.concatenate([audio[::step], preset[::step]], axis=1).astype(np.float64)
    want = np.quantile(sample, np.linspace(0, 1, BINS + 1)[1:-1], axis=0).T.tolist()
    assert step > 1 and decile_edges(audio, preset) == want
