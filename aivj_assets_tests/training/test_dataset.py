"""Store rows become aligned tensors in one pass; splits follow data/split.py; bad rows are named."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from aivj_assets.data.split import GATE, SELECTION, TRAIN, corpus_part
from aivj_assets.training.dataset import elite_parts, split_parts, tensors_from_table
from aivj_assets_tests.builders import pair_table


def test_table_becomes_aligned_tensors():
    table = pair_table(n=50, audio_dim=5, preset_dim=3, weights=True)
    t = tensors_from_table(table)
    assert len(t) == 50 and t.audio.shape == (50, 5) and t.preset.shape == (50, 3)
    assert t.audio.dtype == t.label.dtype == t.weight.dtype == torch.float32
    row = 17
    assert torch.equal(t.audio[row], torch.tensor(table.column("audio")[row].as_py(), dtype=torch.float32))
    assert t.label[row].item() == table.column("label")[row].as_py()
    assert t.weight[row].item() == pytest.approx(table.column("weight")[row].as_py())
    assert t.row_hash[row] == table.column("row_hash")[row].as_py()


def test_subset_concat_keep_rows_aligned():
    t = tensors_from_table(pair_table(n=30))
    a, b = t.subset(np.arange(10)), t.subset(torch.arange(30) >= 10)
    joined = a.concat(b)
    assert torch.equal(joined.audio, t.audio) and list(joined.row_hash) == list(t.row_hash)
    assert joined.fingerprint() == t.fingerprint()
    assert t.subset([2, 1]).fingerprint() != t.subset([1, 2]).fingerprint()


def test_split_parts_is_the_row_hash_split():
    t = tensors_from_table(pair_table(n=400))
    train, selection, gate = split_parts(t, 0.15, 0.25)
    part = corpus_part(t.row_hash, 0.15, 0.25)
    assert list(gate.row_hash) == list(t.row_hash[part == GATE])
    assert list(selection.row_hash) == list(t.row_hash[part == SELECTION])
    assert list(train.row_hash) == list(t.row_hash[part == TRAIN])
    # A row's part does not depend on which other rows are present.
    _, selection_half, gate_half = split_parts(t.subset(np.arange(200)), 0.15, 0.25)
    assert set(gate_half.row_hash) <= set(gate.row_hash) and set(selection_half.row_hash) <= set(selection.row_hash)


def test_missing_weight_means_one_and_missing_hash_is_derived():
    table = pair_table(n=20)
    bare = table.drop_columns(["weight", "row_hash"])
    t = tensors_from_table(bare)
    assert torch.equal(t.weight, torch.ones(20))
    assert list(t.row_hash) == table.column("row_hash").to_pylist()


def test_ragged_vector_names_the_row():
    table = pair_table(n=5, audio_dim=4, preset_dim=3)
    audio = table.column("audio").to_pylist()
    audio[3] = audio[3][:2]
    bad = table.set_column(0, "audio", pa.array(audio, type=pa.list_(pa.float32())))
    with pytest.raises(ValueError, match=r"part-7: row 3: audio has 2 values, expected 4"):
        tensors_from_table(bad, source="part-7")


def test_elite_parts_follow_the_part_column():
    table = pair_table(n=10)
    parts = ["judge" if i % 3 == 0 else "warmup" for i in range(10)]
    warm, judge = elite_parts(table.append_column("part", pa.array(parts)))
    assert len(judge) == 4 and len(warm) == 6
    assert list(judge.row_hash) == [h for h, p in zip(table.column("row_hash").to_pylist(), parts, strict=True) if p == "judge"]


def test_row_ids_decode_store_hashes_and_digest_anything_else():
    from aivj_assets.training.dataset import row_ids

    ids = row_ids(np.array(["abcdef0123456789", "not-a-hash", "ABCDEF0123456789"]))
    assert ids[0] == ids[2] == 0xABCDEF0123456789
    # A row's id does not depend on the other rows in the array (a checkpoint compares them later).
    assert row_ids(np.array(["not-a-hash"]))[0] == ids[1]
    assert row_ids(np.array(["abcdef0123456789"], dtype=object))[0] == ids[0]
