"""Scoring with TrackEval and `mot-reid eval` end to end, on the real shared sequences and on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mot_factory import make_seq

from mot_reid.cli import main
from mot_reid.errors import UserError
from mot_reid.mot_data import find_sequences, load_sequence, read_mot_rows, write_mot_results
from mot_reid.mot_eval import score_results

GT = "1,1,10,20,30,60,1,1,1.0\n2,1,12,20,30,60,1,1,1.0\n3,1,14,20,30,60,1,1,1.0\n"
DET = "".join(f"{f},-1,{8 + 2 * f},20,30,60,0.9,-1,-1,-1\n" for f in (1, 2, 3))


def test_gt_as_result_scores_perfectly(tmp_path, shared_data):
    seq = load_sequence(shared_data / "mot" / "TUD-Campus")
    rows = read_mot_rows(seq.gt_path)
    result = write_mot_results(tmp_path / "r.txt", [[*r[:6], 1, -1, -1, -1] for r in rows])
    scores = score_results([seq], {seq.name: result})
    assert scores["TUD-Campus"]["HOTA"] == pytest.approx(100.0) and scores["COMBINED"]["IDF1"] == pytest.approx(100)


def test_empty_result_scores_zero_without_crashing(tmp_path):
    seq = load_sequence(make_seq(tmp_path, gt=GT, det=DET))
    scores = score_results([seq], {seq.name: write_mot_results(tmp_path / "r.txt", [])})
    assert scores[seq.name]["HOTA"] == 0.0 and scores["COMBINED"]["IDSW"] == 0


def test_result_frames_outside_sequence_are_a_user_error(tmp_path):
    seq = load_sequence(make_seq(tmp_path, gt=GT, det=DET))
    bad = write_mot_results(tmp_path / "r.txt", [[7, 1, 1, 1, 5, 5, 1, -1, -1, -1]])
    with pytest.raises(UserError, match="outside"):
        score_results([seq], {seq.name: bad})


def test_missing_gt_is_a_user_error(tmp_path):
    seq = load_sequence(make_seq(tmp_path, det=DET))
    with pytest.raises(UserError, match="no gt"):
        score_results([seq], {seq.name: write_mot_results(tmp_path / "r.txt", [])})


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    make_seq(tmp_path / "a", gt=GT, det=DET)
    assert main(["eval", str(tmp_path / "a"), "--tracker", "no-such-tracker", "--out-dir", str(tmp_path / "o")]) == 2
    assert main(["eval", str(tmp_path), "--out-dir", str(tmp_path / "o")]) == 2
    assert main(["eval", str(tmp_path / "a"), "--detections", "yolo"]) == 2
    assert main(["eval", str(tmp_path / "a"), "--set", "no_such_key=1", "--out-dir", str(tmp_path / "o")]) == 2
    # Besides the four one-line errors, the yolo run may warn once that it falls back to HOG offline.
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("WARNING:")]
    assert len(err) == 4 and all(line.startswith("mot-reid eval: error:") for line in err)


def test_cli_on_tiny_sequence_writes_results_config_and_json(tmp_path, capsys):
    seq = make_seq(tmp_path / "root", gt=GT, det=DET)
    out = tmp_path / "run"
    assert main(["eval", str(seq), "--set", "n_init=1", "--out-dir", str(out), "--json", str(tmp_path / "s.json")]) == 0
    table = capsys.readouterr().out
    assert "SEQ-01" in table and "COMBINED" in table
    assert (out / "data" / "SEQ-01.txt").is_file() and (out / "tracker.yaml").is_file()
    assert "versions" in json.loads((out / "eval.json").read_text())
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["SEQ-01"]["IDF1"] > 90


@pytest.mark.slow
@pytest.mark.parametrize("tracker, floors", [
    # Measured motion-only: deepsort PETS 39.6 HOTA / 51.9 IDF1, TUD 51.3 / 72.6; motion PETS 41.6 / 56.5,
    # TUD 51.4 / 72.6 (BENCHMARKS.md, peers_motion); strongsort PETS 33.9 / 41.0, TUD 47.8 / 66.4.
    ("deepsort", {"PETS09-S2L1": (38.5, 50.5), "TUD-Campus": (50.0, 71.0)}),
    ("motion", {"PETS09-S2L1": (40.5, 55.0), "TUD-Campus": (50.0, 71.0)}),
    ("strongsort", {"PETS09-S2L1": (32.5, 39.5), "TUD-Campus": (46.5, 65.0)}),
])
def test_public_detections_on_real_sequences(tmp_path, shared_data, tracker, floors):
    json_path = tmp_path / "scores.json"
    args = ["eval", str(shared_data / "mot" / "PETS09-S2L1"), str(shared_data / "mot" / "TUD-Campus"),
            "--tracker", tracker, "--out-dir", str(tmp_path / "run"), "--json", str(json_path)]
    assert main(args) == 0
    scores = json.loads(json_path.read_text())
    for name, (hota, idf1) in floors.items():
        assert scores[name]["HOTA"] >= hota and scores[name]["IDF1"] >= idf1, scores[name]


@pytest.mark.slow
def test_motion_only_on_yolo_boxes_gets_the_yolo_score_thresholds(tmp_path, shared_data):
    # Measured with these boxes (BENCHMARKS.md, peers_motion_yolo): motion_yolo TUD-Campus 55.6 HOTA / 79.3 IDF1,
    # motion (thresholds chosen on Faster R-CNN scores) 50.4 / 71.1, deepsort 44.4 / 60.4.
    out, json_path = tmp_path / "run", tmp_path / "s.json"
    assert main(["eval", str(shared_data / "mot" / "TUD-Campus"), "--detections", "yolo", "--detector",
                 str(shared_data / "weights" / "yolov8n.pt"), "--conf", "0.1", "--reid", "none",
                 "--out-dir", str(out), "--json", str(json_path)]) == 0
    assert json.loads((out / "eval.json").read_text())["tracker_source"] == "motion_yolo"
    scores = json.loads(json_path.read_text())["TUD-Campus"]
    assert scores["HOTA"] >= 54 and scores["IDF1"] >= 77, scores


@pytest.mark.slow
def test_mot17_mini_scores_with_distractor_rules(tmp_path, shared_data):
    assert len(find_sequences([shared_data / "mot" / "MOT17-mini" / "train"])) == 7
    json_path = tmp_path / "s.json"
    assert main(["eval", str(shared_data / "mot" / "MOT17-mini" / "train"), "--out-dir", str(tmp_path / "r"),
                 "--json", str(json_path)]) == 0
    scores = json.loads(json_path.read_text())
    assert len(scores) == 8 and 30 < scores["COMBINED"]["HOTA"] < 100


@pytest.mark.slow
def test_frame_free_sequence_evaluates_from_seqinfo_and_det(tmp_path, shared_data):
    seq = load_sequence(shared_data / "mot" / "MOT15-noframes" / "KITTI-13")
    assert not seq.has_frames and seq.num_frames == seq.seq_length and (seq.width, seq.height) == (1242, 375)
    json_path = tmp_path / "s.json"
    assert main(["eval", str(shared_data / "mot" / "MOT15-noframes" / "KITTI-13"), "--out-dir", str(tmp_path / "r"),
                 "--json", str(json_path)]) == 0
    scores = json.loads(json_path.read_text())
    # Measured with auto = motion: KITTI-13 HOTA 26.4, IDF1 39.3 (deepsort 24.9 / 35.4).
    assert 25 < scores["KITTI-13"]["HOTA"] < 100 and scores["COMBINED"]["IDF1"] > 37


@pytest.mark.slow
@pytest.mark.parametrize("extra, named", [(["--reid", "auto"], "--reid auto"), (["--set", "cmc=ecc"], "cmc=ecc"),
                                          (["--detections", "yolo"], "--detections yolo")])
def test_frame_free_sequence_refuses_what_needs_frames(tmp_path, shared_data, capsys, extra, named):
    out = tmp_path / "r"
    assert main(["eval", str(shared_data / "mot" / "MOT15-noframes" / "KITTI-13"), "--out-dir", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "KITTI-13" in err and "no img1/ or video" in err
    assert not out.exists()


ENGINE_SEQS = ("MOT15-noframes/ETH-Sunnyday", "MOT15-noframes/KITTI-13", "TUD-Campus")  # two frame-free, one with


def _eval_outputs(shared_data, out, *extra) -> tuple[dict, dict]:
    args = ["eval", *(str(shared_data / "mot" / s) for s in ENGINE_SEQS), "--reid", "none",
            "--out-dir", str(out), "--json", str(out / "scores.json"), *extra]
    assert main(args) == 0
    files = {p.name: p.read_text() for p in sorted((out / "data").iterdir())}
    return files, json.loads((out / "scores.json").read_text())


@pytest.fixture(scope="module")
def serial_eval(shared_data, tmp_path_factory):
    return _eval_outputs(shared_data, tmp_path_factory.mktemp("serial"), "--workers", "1")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_parallel_eval_equals_serial_eval(tmp_path, shared_data, serial_eval, engine):
    if engine == "ray":
        ray = pytest.importorskip("ray")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        files, scores = _eval_outputs(shared_data, tmp_path / engine, "--engine", engine, "--workers", "2")
    finally:
        if engine == "ray":
            ray.shutdown()
    assert list(files) == ["ETH-Sunnyday.txt", "KITTI-13.txt", "TUD-Campus.txt"]
    assert files == serial_eval[0] and all(files.values())
    assert scores == serial_eval[1] and list(scores)[-1] == "COMBINED"


@pytest.mark.slow
def test_worker_that_cannot_load_its_model_is_one_line_exit_2(tmp_path, shared_data):
    # A pool restarts a worker whose setup raised, forever; the run must end with the worker's reason instead.
    seqs = [str(shared_data / "mot" / s) for s in ("TUD-Campus", "PETS09-S2L1")]
    proc = subprocess.run([sys.executable, "-m", "mot_reid.cli", "eval", *seqs, "--reid", str(tmp_path / "no.pth"),
                           "--workers", "2", "--out-dir", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("mot-reid eval: error: ReID")
    assert "Traceback" not in proc.stderr and not (tmp_path / "o" / "eval.json").exists()
