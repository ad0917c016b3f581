"""Reading MOT sequences: real quirks of the shared data, and bad input in tiny temporary sequences."""

from __future__ import annotations

import numpy as np
import pytest
from mot_factory import make_seq

from mot_reid.errors import UserError
from mot_reid.mot_data import find_sequences, load_sequence, read_detections, read_mot_rows, write_mot_results
from trackers.boxes import mot_to_xyxy, xyxy_to_mot


def test_real_sequences_layouts(shared_data):
    seqs = {s.name: s for s in find_sequences([shared_data / "mot" / "PETS09-S2L1", shared_data / "mot" / "MOT17-mini"
                                               / "train"])}
    pets = seqs["PETS09-S2L1"]
    assert pets.mot15 and pets.video is not None and pets.img_dir is None and pets.num_frames == 795
    m02 = seqs["MOT17-02-FRCNN"]
    assert not m02.mot15 and m02.seq_length == 600 and m02.num_frames == 4 and m02.img_dir is not None
    assert len(seqs) == 8


def test_mot17_mini_detections_after_present_frames_are_dropped(shared_data):
    seq = load_sequence(shared_data / "mot" / "MOT17-mini" / "train" / "MOT17-02-FRCNN")
    dets = read_detections(seq.det_path, seq.num_frames, seq.seq_length)
    assert sorted(dets) == [1, 2, 3, 4]
    xyxy, score = dets[1]
    assert xyxy.dtype == np.float32 and xyxy.shape[1] == 4 and len(score) == len(xyxy)
    assert (xyxy[:, 2] > xyxy[:, 0]).all()


def test_box_conversion_round_trip_is_one_based():
    mot = np.array([[1.0, 1.0, 10.0, 20.0]])
    assert np.allclose(mot_to_xyxy(mot), [[0, 0, 10, 20]])
    assert np.allclose(xyxy_to_mot(mot_to_xyxy(mot)), mot)


def test_write_results_atomically_and_read_back(tmp_path):
    rows = [[1, 3, 10.5, 20.25, 30, 40, 0.9, -1, -1, -1], [2, 3, 11, 21, 30, 40, 0.8, -1, -1, -1]]
    path = write_mot_results(tmp_path / "out" / "SEQ.txt", rows)
    back = read_mot_rows(path)
    assert back.shape == (2, 10) and np.allclose(back[:, :7], np.array(rows)[:, :7])
    assert write_mot_results(tmp_path / "empty.txt", []).read_text() == ""
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["SEQ.txt"]  # no temp files left behind


def test_frames_counted_from_img1(tmp_path):
    seq = load_sequence(make_seq(tmp_path, length=5, frames=3))
    assert seq.num_frames == 3 and seq.seq_length == 5 and seq.gt_path is None and not seq.mot15


def test_no_seqinfo_is_a_user_error(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="no seqinfo.ini"):
        load_sequence(tmp_path / "x")
    with pytest.raises(UserError, match="holds no sequence folders"):
        find_sequences([tmp_path])
    with pytest.raises(UserError, match="not found"):
        find_sequences([tmp_path / "missing"])


def test_empty_det_file_is_a_user_error(tmp_path):
    seq = load_sequence(make_seq(tmp_path, det=""))
    with pytest.raises(UserError, match="empty"):
        read_detections(seq.det_path, seq.num_frames, seq.seq_length)


def test_detections_outside_the_sequence_are_a_user_error(tmp_path):
    seq = load_sequence(make_seq(tmp_path, det="9,-1,10,20,30,60,0.9,-1,-1,-1\n"))
    with pytest.raises(UserError, match="outside the sequence"):
        read_detections(seq.det_path, seq.num_frames, seq.seq_length)


def test_garbage_det_file_is_a_user_error(tmp_path):
    seq = load_sequence(make_seq(tmp_path, det="hello,world\n"))
    with pytest.raises(UserError, match="not a MOT file"):
        read_detections(seq.det_path, seq.num_frames, seq.seq_length)
