"""The three task kinds: head width, losses against their formulas, label decoding, metric wiring."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from lssat.data.index import Index, IndexHeader, Record
from lssat.errors import ConfigError, InputError
from lssat.tasks import (build_task, class_counts, inverse_frequency_weights, subgroup_values,
                         task_from_header)

CLASSES = ["Neutral", "Happy", "Sad", "Surprise"]
ATTRS = ["Smiling", "Male", "Eyeglasses"]


def test_head_width_headline_and_names():
    df, at, ex = build_task("deepfake"), build_task("attributes", ATTRS), build_task("expression", CLASSES)
    assert (df.num_outputs, at.num_outputs, ex.num_outputs) == (1, 3, 4)
    assert (df.names, at.names, ex.names) == (["real", "fake"], ATTRS, CLASSES)
    assert (df.headline, at.headline, ex.headline) == ("frame_auc", "mean_acc", "acc")
    assert df.higher_is_better and at.higher_is_better and ex.higher_is_better
    eer = build_task("deepfake", headline="eer")
    assert not eer.higher_is_better
    assert eer.is_better(0.1, 0.2) and not eer.is_better(0.3, 0.2) and eer.is_better(0.3, None)
    assert ex.is_better(0.7, 0.6) and not ex.is_better(math.nan, 0.1) and ex.is_better(0.1, math.nan)
    assert ex.label_smoothing == 0.1 and df.label_smoothing == 0.0
    json.dumps([df.describe(), at.describe(), ex.describe()])


def test_configuration_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown task kind 'regression'"):
        build_task("regression", ["a"])
    with pytest.raises(ConfigError, match="class names"):
        build_task("expression")
    with pytest.raises(ConfigError, match="headline metric must be one of"):
        build_task("expression", CLASSES, headline="auc")
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_task("expression", CLASSES, label_smoothing=1.5)
    with pytest.raises(ConfigError, match="class_weights has 2 values for 4 classes"):
        build_task("expression", CLASSES, class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="pos_weight has 1 values for 3 attributes"):
        build_task("attributes", ATTRS, pos_weight=[2.0])


def test_task_from_header():
    head = IndexHeader(dataset="affectnet", task="expression", classes=CLASSES, subgroups=["skin_tone"])
    task = task_from_header(head)
    assert task.kind == "expression" and task.names == CLASSES and task.subgroups == ["skin_tone"]
    assert task_from_header(IndexHeader(dataset="celeba", task="attributes", attribute_names=ATTRS)).num_outputs == 3
    df = task_from_header(IndexHeader(dataset="ffpp", task="deepfake"), headline="video_auc")
    assert df.kind == "deepfake" and df.headline == "video_auc" and df.subgroups == []


def test_deepfake_loss_is_bce_on_one_logit():
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]], requires_grad=True)
    y = torch.tensor([1, 0, 0, 1])
    p = torch.sigmoid(logits.detach()[:, 0])
    plain = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert build_task("deepfake").loss(logits, {"label": y}).item() == pytest.approx(plain.item(), rel=1e-6)
    # smoothing 0.2 moves targets to 0.1 / 0.9; pos_weight 3 scales the positive term
    t = y * 0.8 + 0.1
    ref = -(3 * t * p.log() + (1 - t) * (1 - p).log()).mean()
    task = build_task("deepfake", label_smoothing=0.2, pos_weight=3.0)
    loss = task.loss(logits, {"label": y})
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None and logits.grad.shape == (4, 1)
    assert torch.equal(task.predict(logits), torch.tensor([1, 0, 1, 0]))
    assert task.probabilities(logits).shape == (4,)


def test_attributes_loss_is_mean_bce_over_all_attributes():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=g)
    y = torch.randint(0, 2, (5, 3), generator=g)
    p = torch.sigmoid(logits)
    ref = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    task = build_task("attributes", ATTRS)
    assert task.loss(logits, {"attributes": y}).item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.equal(task.predict(logits), (logits >= 0).long())
    with pytest.raises(InputError, match=r"head output must be \(B, 3\)"):
        task.loss(logits[:, :2], {"attributes": y})
    with pytest.raises(InputError, match=r"'attributes' must be \(B, 3\)"):
        task.loss(logits, {"attributes": y[:, :2]})


def test_expression_loss_smoothing_and_class_weights():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 1, 1])
    lp = logits.log_softmax(1)
    nll = -lp[torch.arange(6), y]
    eps = 0.1  # the default
    ref = ((1 - eps) * nll + eps * (-lp.mean(1))).mean()
    task = build_task("expression", CLASSES)
    assert task.loss(logits, {"label": y}).item() == pytest.approx(ref.item(), rel=1e-6)
    # class weights: each sample weighted by its class, the smoothing term by every class's weight
    w = torch.tensor([1.0, 0.5, 2.0, 4.0])
    ref_w = ((1 - eps) * w[y] * nll + eps * (-(lp * w).mean(1))).sum() / w[y].sum()
    weighted = build_task("expression", CLASSES, class_weights=w)
    assert weighted.loss(logits, {"label": y}).item() == pytest.approx(ref_w.item(), rel=1e-6)
    unsmoothed = build_task("expression", CLASSES, label_smoothing=0.0)
    assert unsmoothed.loss(logits, {"label": y}).item() == pytest.approx(nll.mean().item(), rel=1e-6)
    assert torch.equal(task.predict(logits), logits.argmax(1))
    assert torch.allclose(task.probabilities(logits).sum(1), torch.ones(6))


def test_inverse_frequency_weights_match_sklearn_balanced():
    labels = np.array([0] * 50 + [1] * 10 + [2] * 5 + [3] * 35)
    counts = np.bincount(labels)
    ref = compute_class_weight("balanced", classes=np.arange(4), y=labels)
    assert np.allclose(inverse_frequency_weights(counts).numpy(), ref)
    w = inverse_frequency_weights([4, 0, 4])  # a class without samples gets weight 0
    assert w.tolist() == pytest.approx([2 / 3, 0.0, 2 / 3])
    with pytest.raises(ConfigError, match="class counts"):
        inverse_frequency_weights([5])


def test_class_counts_from_an_index(tmp_path):
    head = IndexHeader(dataset="affectnet", task="expression", classes=CLASSES)
    records = [Record(path=f"{i}.jpg", split="train" if i < 7 else "val", label=i % 4) for i in range(10)]
    index = Index(header=head, records=records, root=tmp_path)
    assert class_counts(index) == [2, 2, 2, 1]
    assert class_counts(index, "val") == [1, 1, 0, 1]


def test_label_decoding_errors_name_the_field():
    ex = build_task("expression", CLASSES)
    logits = torch.zeros(2, 4)
    with pytest.raises(InputError, match="needs the field 'label'"):
        ex.loss(logits, {"attributes": torch.zeros(2, 4)})
    with pytest.raises(InputError, match=r"class ids 0\.\.3, got 0\.\.7"):
        ex.loss(logits, {"label": torch.tensor([0, 7])})
    with pytest.raises(InputError, match="0 \\(real\\) or 1 \\(fake\\)"):
        build_task("deepfake").target({"label": torch.tensor([0, 2])})
    with pytest.raises(InputError, match="'video_id' must be a list of 2 strings"):
        build_task("deepfake").metrics().update(torch.zeros(2, 1), {"label": torch.tensor([0, 1]), "video_id": ["a"]})


@pytest.mark.parametrize("form", ["list_of_dicts", "dict_of_lists", "dict_of_tensors"])
def test_subgroup_forms_decode_alike(form):
    values = [0, 1, 1, None]
    batch = {
        "list_of_dicts": {"subgroup": [{"age": v} if v is not None else {} for v in values]},
        "dict_of_lists": {"subgroup": {"age": values}},
        "dict_of_tensors": {"subgroup": {"age": torch.tensor([0, 1, 1, -1])}},
    }[form]
    expected = [0, 1, 1, None] if form != "dict_of_tensors" else [0, 1, 1, -1]
    assert subgroup_values(batch, "age", 4) == expected
    assert subgroup_values({}, "age", 3) == [None, None, None]
    with pytest.raises(InputError, match="has 4 values for 'age', expected 5"):
        subgroup_values(batch, "age", 5)


def batch_for(kind: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    skin = [["light", "dark"][i % 2] for i in range(n)]
    if kind == "deepfake":
        y = torch.arange(n) % 2
        return torch.randn(n, 1, generator=g) + y[:, None], {
            "label": y, "video_id": [f"v/{i // 3}.mp4" for i in range(n)],
            "method": ["real" if v == 0 else "FaceSwap" for v in y.tolist()], "subgroup": {"skin": skin}}
    if kind == "attributes":
        return torch.randn(n, 3, generator=g), {"attributes": torch.randint(0, 2, (n, 3), generator=g),
                                                 "subgroup": [{"skin": s} for s in skin]}
    return torch.randn(n, 4, generator=g), {"label": torch.randint(0, 4, (n,), generator=g),
                                             "subgroup": [{"skin": s} for s in skin]}


@pytest.mark.parametrize("kind", ["deepfake", "attributes", "expression"])
def test_task_metrics_hold_headline_and_fairness(kind):
    task = build_task(kind, None if kind == "deepfake" else (ATTRS if kind == "attributes" else CLASSES),
                      subgroups=["skin"])
    metrics = task.metrics()
    g = torch.Generator().manual_seed(2)
    batches = [batch_for(kind, n, g) for n in (6, 5, 7)]
    for logits, batch in batches:
        metrics.update(logits, batch)
    out = metrics.compute()
    assert task.headline in out and isinstance(out[task.headline], float)
    assert out["fair/skin/n/light"] + out["fair/skin/n/dark"] == 18
    assert "fair/skin/acc_gap" in out and isinstance(out["notes"], list)
    # the same batches decoded by hand give the same fairness accuracy
    correct, groups = [], []
    for logits, batch in batches:
        pred, truth = task.predict(logits), task.target(batch)
        hit = (pred == truth).float().mean(1) if kind == "attributes" else (pred == truth).float()
        correct += hit.tolist()
        groups += subgroup_values(batch, "skin", len(hit))
    light = [c for c, s in zip(correct, groups) if s == "light"]
    assert out["fair/skin/acc/light"] == pytest.approx(sum(light) / len(light))
    metrics.reset()
    logits, batch = batches[0]
    metrics.update(logits, batch)
    assert metrics.compute()["fair/skin/n/light"] == 3  # reset forgot the earlier batches


def datamodule_batch(n: int) -> dict:
    """A deepfake batch in the data module's schema: "" marks an absent video, method or subgroup."""
    return {
        "image": torch.zeros(n, 3, 8, 8, dtype=torch.uint8),
        "label": torch.tensor([0, 1, 1, 0][:n], dtype=torch.long),
        "attributes": torch.zeros(n, 0, dtype=torch.long),
        "video_id": ["original/000.mp4", "Deepfakes/000.mp4", "", ""][:n],
        "method": ["real", "Deepfakes", "", ""][:n],
        "subgroup": {"skin_tone": ["light", "", "dark", "dark"][:n]},
        "frame": torch.tensor([0, 0, -1, -1][:n]),
    }


def test_datamodule_schema_absent_values_and_empty_batches():
    task = build_task("deepfake", subgroups=["skin_tone"])
    metrics = task.metrics()
    logits = torch.tensor([[-1.0], [2.0], [0.5], [1.0]], requires_grad=True)
    metrics.update(logits, datamodule_batch(4))
    empty_logits = torch.zeros(0, 1, requires_grad=True)
    loss = task.loss(empty_logits, datamodule_batch(0))
    assert loss.item() == 0.0 and loss.requires_grad  # not nan: an all-skipped batch changes nothing
    metrics.update(empty_logits, datamodule_batch(0))
    out = metrics.compute()
    assert out["n_frames"] == 4 and out["n_videos"] == 2  # "" is no video
    # reals score sigmoid(-1), sigmoid(1); the Deepfakes frame (2.0) beats both, the unnamed fake (0.5) one
    assert out["auc/Deepfakes"] == 1.0 and out["auc/fake"] == 0.5
    assert out["fair/skin_tone/n/unknown"] == 1 and out["fair/skin_tone/n/dark"] == 2
    for kind, names, width in (("expression", CLASSES, 4), ("attributes", ATTRS, 3)):
        t = build_task(kind, names)
        batch = {"label": torch.zeros(0, dtype=torch.long), "attributes": torch.zeros(0, 3, dtype=torch.long)}
        assert t.loss(torch.zeros(0, width, requires_grad=True), batch).item() == 0.0
