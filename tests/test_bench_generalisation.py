"""Generalisation protocols (issue 13): eval sets, leave-one-method-out, the shifted synthetic domain,
and the report's Generalisation section, through the real engine on tiny data."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest
import torch

from lssat.bench import generalisation as gen
from lssat.bench.spec import load_spec
from lssat.bench.store import ResultsStore
from lssat.data.synthetic import generate
from lssat.data.synthetic.domains import SHIFTED_JPEG, shift_faces
from lssat.errors import ConfigError
from lssat.metrics.deepfake import average_precision, equal_error_rate, roc_auc

METHODS = ["Deepfakes", "FaceSwap"]


def _spec(index: str) -> dict:
    return {
        "name": "gen-test",
        "base": {"data": {"image_size": 32, "batch_size": 16, "num_workers": 0},
                 "trainer": {"max_steps": 3, "warmup_steps": 1, "accelerator": "cpu", "precision": "32",
                             "log_every": 1, "progress": False}},
        "backbones": {"vit": {"model": {"backbone": "vit_tiny_patch16_224",
                                        "kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 16, "num_heads": 2}}}},
        "tasks": {"deepfake": {
            "kind": "deepfake",
            "config": {"task": {"kind": "deepfake", "headline": "video_auc"},
                       "data": {"synthetic": {"task": "deepfake", "train": 32, "val": 16, "test": 32, "seed": 0}}},
            "eval_sets": {"shifted": {"synthetic": {"options": {"domain": "shifted"}}},
                          "other": {"index": index}},
            "protocol": {"name": "leave_one_method_out", "methods": METHODS}}},
        "recipes": ["supervised"],
        "seeds": [0],
        "runner": {"threads": 1, "materialize_synthetic": True},
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One tiny benchmark: 3 groups (every method, all but Deepfakes, all but FaceSwap), each cell
    evaluated on two extra test sets (the shifted domain, and another synthetic dataset as an index)."""
    from lssat.bench.runner import run_benchmark
    from lssat.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("gen")
    write_synthetic(root / "other", "deepfake", {"train": 8, "val": 0, "test": 32}, size=32, seed=7,
                    index_path=root / "other" / "index.jsonl", progress=False)
    spec = _spec(str(root / "other" / "index.jsonl"))
    result = run_benchmark(load_spec(spec), root / "bench", progress=False, write_report=False)
    assert result.done == 3 and not result.failed
    return root / "bench", spec


def test_leave_one_method_out_expands_into_one_group_per_method():
    cells = load_spec(_spec("/nowhere/index.jsonl")).cells()
    groups = {c.task: c for c in cells}
    assert list(groups) == ["deepfake", "deepfake-lomo-Deepfakes", "deepfake-lomo-FaceSwap"]
    assert groups["deepfake"].config["data"]["synthetic"]["options"]["methods"] == METHODS
    held = groups["deepfake-lomo-Deepfakes"]
    assert held.config["data"]["synthetic"]["options"]["methods"] == ["FaceSwap"]
    assert held.protocol == {"name": "leave_one_method_out", "task": "deepfake", "held_out": "Deepfakes",
                             "trained_on": ["FaceSwap"]}
    assert held.eval_sets["heldout"]["synthetic"]["options"]["methods"] == ["Deepfakes"]
    # the extra sets are the task's own data in another domain, every method, test split only
    shifted = held.eval_sets["shifted"]["synthetic"]
    assert shifted["options"] == {"domain": "shifted"} and shifted["test"] == 32 and shifted["val"] == 0
    # eval sets are not part of a cell's id: adding one does not make a new cell
    plain = copy.deepcopy(_spec("/nowhere/index.jsonl"))
    del plain["tasks"]["deepfake"]["eval_sets"]
    assert [c.cell_id for c in load_spec(plain).cells()] == [c.cell_id for c in cells]


@pytest.mark.parametrize("change, words", [
    (lambda t: t.update(eval_sets={"test": {"index": "x"}}), "reserved"),
    (lambda t: t.update(eval_sets={"a": {"index": "x", "synthetic": {}}}), "eval_sets.a"),
    (lambda t: t.update(eval_sets={"a_b": {"index": "x"}}), "label"),
    (lambda t: t.update(protocol="leave_one_out"), "protocol must be one of"),
    (lambda t: t.update(protocol={"name": "leave_one_method_out", "methods": ["Deepfakes", "Morph"]}), "Morph"),
    (lambda t: t["config"].update(data={"index": "x.jsonl"}), "needs data.synthetic"),
    (lambda t: t.update(kind="expression"), "only deepfake tasks"),
])
def test_bad_protocol_settings_are_config_errors(change, words):
    spec = _spec("x.jsonl")
    change(spec["tasks"]["deepfake"])
    with pytest.raises(ConfigError, match=words):
        load_spec(spec).cells()


def test_each_cell_is_evaluated_on_the_extra_sets(bench):
    folder, _ = bench
    entries = ResultsStore(folder).entries()
    assert len(entries) == 3
    for entry in entries:
        sets = entry["record"]["eval_sets"]
        lomo = entry["axes"].get("protocol", {}).get("held_out")
        assert set(sets) == ({"shifted", "other", "heldout"} if lomo else {"shifted", "other"})
        for name, result in sets.items():
            assert result["error"] is None, result
            metrics = result["metrics"]
            # every deepfake eval set: video AUC by full video id, frame AUC, EER, AP, per method
            assert {"video_auc", "frame_auc", "eer", "ap", "n_videos"} <= set(metrics)
            assert any(k.startswith("auc/") for k in metrics)
            assert metrics["n_videos"] == 4
            pred = np.load(folder / entry["run_dir"] / entry["record"]["run_id"] / result["predictions"])
            assert len(pred["score"]) == 32 and all("/videos/" in v for v in pred["video_id"])
            if name == "heldout":  # reals plus the held-out method's fakes only
                methods = {k[4:] for k in metrics if k.startswith("auc/")}
                assert methods == {lomo}
                assert {v.split("/")[4] for v in pred["video_id"] if "/fake/" in v} == {lomo}
        # the run folder's record holds the same results
        record = json.loads(next((folder / entry["run_dir"]).glob("*/run_record.json")).read_text())
        assert set(record["eval_sets"]) == set(sets)


def test_resume_evaluates_a_missing_set_without_retraining(bench, capsys):
    from lssat.bench.runner import run_benchmark

    folder, spec = bench
    store = ResultsStore(folder)
    entry = next(e for e in store.entries() if e["axes"]["task"] == "deepfake")
    del entry["record"]["eval_sets"]["other"]
    store.put(entry)
    record_file = next((folder / entry["run_dir"]).glob("*/run_record.json"))
    record = json.loads(record_file.read_text())
    del record["eval_sets"]["other"]
    record_file.write_text(json.dumps(record))
    finished = record["finished"]
    result = run_benchmark(load_spec(spec), folder, progress=True, write_report=False)
    assert result.ran == 0 and result.done == 3
    assert "evaluated on shifted, other" in capsys.readouterr().err
    again = next(e for e in ResultsStore(folder).entries() if e["cell_id"] == entry["cell_id"])
    assert again["record"]["eval_sets"]["other"]["metrics"]["n_videos"] == 4
    assert again["record"]["finished"] == finished  # not trained again


def test_report_shows_the_generalisation_matrix(bench):
    from lssat.bench.report import write_report

    folder, _ = bench
    md = write_report(folder, pictures=False).read_text()
    assert "## Generalisation" in md
    assert "train -> test matrix" in md and "| all but Deepfakes |" in md and "| every method |" in md
    for column in ("in-domain: video AUC", "held-out method: EER", "shifted: AP", "other: frame AUC"):
        assert column in md
    assert "cross-method" in md and "cross-domain: shifted" in md and "cross-domain: other" in md
    assert (folder / "tables" / "generalisation_matrix_deepfake_supervised.csv").is_file()
    assert (folder / "plots" / "roc_det_deepfake_shifted.png").is_file()
    # a study without eval sets or protocols has no such section
    from lssat.bench.results import load_results

    results = load_results(folder)
    results.frame = results.frame.iloc[0:0]
    assert gen.section(results, folder / "plots", folder.name) == []


def test_bootstrap_metrics_match_the_engine_metrics():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 200)
    score = np.clip(rng.normal(0.4 + 0.2 * target, 0.2), 0, 1)
    got = gen._weighted(score, target, np.ones((1, 200)))
    s, t = torch.tensor(score), torch.tensor(target)
    assert got["auc"][0] == pytest.approx(roc_auc(s, t), abs=1e-6)
    assert got["ap"][0] == pytest.approx(average_precision(s, t), abs=1e-6)
    assert got["eer"][0] == pytest.approx(equal_error_rate(s, t), abs=1e-6)
    # resampling weights: a video drawn twice counts twice
    twice = np.ones((1, 200))
    twice[0, :50] = 2
    repeated = np.concatenate([np.arange(50), np.arange(200)])
    assert gen._weighted(score, target, twice)["auc"][0] == pytest.approx(
        roc_auc(s[repeated], t[repeated]), abs=1e-6)


def test_shifted_domain_changes_the_documented_statistics_not_the_default():
    # the default domain's pixels are those of the generator before domains existed (at difficulty
    # hard, the generator as first released: the presets' calibration may change, the domain may not)
    hard = generate("deepfake", 16, size=16, seed=5, split="test", difficulty="hard")
    assert hashlib.sha256(hard.images.tobytes()).hexdigest() == \
        "5815374c2246259f8fd6557b44a0250a974e5b6215b59af9d76f0a8e0e0b01fa"
    assert np.array_equal(generate("deepfake", 16, size=16, seed=5, split="test", difficulty="hard",
                                   domain="default").images, hard.images)
    default = generate("deepfake", 16, size=16, seed=5, split="test")
    shifted = generate("deepfake", 16, size=16, seed=5, split="test", domain="shifted")
    assert [r.video_id for r in shifted.records] == [r.video_id for r in default.records]
    assert [r.label for r in shifted.records] == [r.label for r in default.records]
    assert not np.array_equal(shifted.images, default.images)
    # the documented changes, on the same drawn faces
    from lssat.data.synthetic.faces import draw_uniforms, sample_faces

    p = sample_faces(draw_uniforms([(0, i) for i in range(64)]), np.zeros(64, bool), difficulty="default")
    q = shift_faces({k: v.copy() for k, v in p.items()}, "shifted", 80.0)
    assert np.allclose(q["face_w"], p["face_w"] * 1.08) and np.allclose(q["scale"], p["scale"] * 0.9)
    assert (q["skin"][:, 2] < p["skin"][:, 2]).all() and (q["noise"] > p["noise"]).all()
    assert q["jpeg_quality"].min() >= SHIFTED_JPEG[0] and q["jpeg_quality"].max() <= SHIFTED_JPEG[1]
    assert p["jpeg_quality"].min() >= 80
    assert shift_faces(p, "default", 80.0) is p
    with pytest.raises(ConfigError, match="domain must be one of"):
        generate("deepfake", 2, size=16, domain="other")


def test_shifted_noise_is_luminance_noise():
    from lssat.data.synthetic import camera

    flat = np.full((1, 3, 32, 32), 128.0, np.float32)
    rgb = camera.add_noise(flat.copy(), np.array([5.0]), [(1, 2, 3)])[0] - 128
    luma = camera.add_noise(flat.copy(), np.array([5.0]), [(1, 2, 3)], luma=True)[0] - 128
    assert np.allclose(luma[0], luma[1]) and np.allclose(luma[0], luma[2])  # one value on the three channels
    assert np.allclose(luma[0, 0::2, 0::2], luma[0, 1::2, 1::2])  # 2 x 2 grains
    assert not np.allclose(rgb[0], rgb[1])
