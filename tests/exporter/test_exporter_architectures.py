"""The built-in architectures reproduce the notes' volumes and parameter counts (shared/cs231n-convnets.md)."""
from __future__ import annotations

import pytest

from exporter.architectures import ARCHITECTURES, CIFAR10_LABELS, UnknownArchitecture, resolve
from exporter.googlenet import INCEPTION

# Figures stated (and checked independently) in shared/cs231n-convnets.md
NOTES_PARAMS = {
    "cifar-tiny": 12 * (5 * 5 * 3 + 1) + (32 * 32 * 3 * 10 + 10),  # 912 + 30,730 = 31,642
    "lenet5": 61_706,
    "alexnet": 60_965_224,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
}


def conv(k, c, f, bias=True):
    return k * c * f * f + (k if bias else 0)


def fc(d, n):
    return d * n + n


@pytest.fixture(scope="module")
def networks():
    return {name: arch.build(name) for name, arch in ARCHITECTURES.items()}


@pytest.mark.parametrize("name", sorted(NOTES_PARAMS))
def test_parameter_counts_match_the_notes(networks, name):
    assert networks[name].num_params() == NOTES_PARAMS[name]


def test_cifar_tiny_is_the_seeds_example(networks):
    net = networks["cifar-tiny"]
    assert net.input_shape == (3, 32, 32)
    assert net.shapes["conv1"] == (12, 32, 32) and net.shapes["maxpool1"] == (12, 16, 16)
    assert net.output_shape == (10,)
    assert net.param_shapes()["fc1.W"] == (16 * 16 * 12, 10)


def test_alexnet_volumes(networks):
    s = networks["alexnet"].shapes
    assert s["input"] == (3, 227, 227) and s["conv1"] == (96, 55, 55)  # (227 - 11)/4 + 1 = 55
    assert s["maxpool1"] == (96, 27, 27) and s["maxpool2"] == (256, 13, 13) and s["maxpool3"] == (256, 6, 6)
    assert networks["alexnet"].param_shapes()["conv2.W"] == (256, 48, 5, 5)  # two groups of 48 input channels


def test_zfnet_first_layer_and_count(networks):
    net = networks["zfnet"]
    assert net.shapes["conv1"] == (96, 110, 110) and net.shapes["maxpool3"] == (256, 6, 6)
    expected = (conv(96, 3, 7) + conv(256, 96, 5) + conv(384, 256, 3) + conv(384, 384, 3) + conv(256, 384, 3)
                + fc(6 * 6 * 256, 4096) + fc(4096, 4096) + fc(4096, 1000))
    assert net.num_params() == expected == 62_357_608


def test_vgg16_volumes_and_first_fc(networks):
    net = networks["vgg16"]
    assert net.shapes["conv1"] == net.shapes["conv2"] == (64, 224, 224)
    assert net.shapes["maxpool5"] == (512, 7, 7)
    w = net.param_shapes()["fc1.W"]
    assert w[0] * w[1] == 102_760_448  # 7*7*512 x 4096


def test_googlenet_count_from_the_papers_table(networks):
    """Recomputed from table 1 of the paper (typed again here), without the auxiliary classifiers."""
    table = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), (480, 192, 96, 208, 16, 48, 64),
             (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
             (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]
    assert [row[1:] for row in table] == list(INCEPTION.values())
    inception = sum(conv(c1, cin, 1) + conv(r3, cin, 1) + conv(c3, r3, 3) + conv(r5, cin, 1) + conv(c5, r5, 5) + conv(pp, cin, 1)
                    for cin, c1, r3, c3, r5, c5, pp in table)
    expected = conv(64, 3, 7) + conv(64, 64, 1) + conv(192, 64, 3) + inception + fc(1024, 1000)
    net = networks["googlenet"]
    assert net.num_params() == expected == 6_998_552
    assert net.shapes["pool2"] == (192, 28, 28) and net.shapes["inception5b_output"] == (1024, 7, 7)
    assert net.shapes["pool5"] == (1024, 1, 1)


def test_resnet18_counts_batchnorm_statistics_as_state(networks):
    net = networks["resnet18"]
    bn_channels = sum(s[0] for k, s in net.param_shapes().items() if k.endswith(".mean"))
    assert net.num_params(trainable_only=False) == 11_689_512 + 2 * bn_channels
    assert net.shapes["conv1"] == (64, 112, 112) and net.shapes["avgpool"] == (512, 1, 1)
    assert sum(n.layer.kind == "add" for n in net.nodes) == 8


def test_labels_per_family(networks):
    for name, arch in ARCHITECTURES.items():
        assert len(arch.labels) == networks[name].num_classes
        c = networks[name].input_shape[0]
        assert len(arch.preprocessing["mean"]) == len(arch.preprocessing["std"]) == c
        assert arch.preprocessing["resize"] == list(networks[name].input_shape[1:])
    assert ARCHITECTURES["cifar-tiny"].labels == ARCHITECTURES["cifar-vgg"].labels == CIFAR10_LABELS
    assert ARCHITECTURES["lenet5"].labels == [str(d) for d in range(10)]
    assert ARCHITECTURES["vgg16"].labels[0] == "class_0" and ARCHITECTURES["vgg16"].labels[-1] == "class_999"


def test_resolve_names_specs_and_unknowns():
    d = resolve("lenet5", "digits")
    assert d.network.name == "digits" and d.architecture == "lenet5" and d.spec.startswith("INPUT[32x32x1]")
    custom = resolve("INPUT[8x8x1] -> FC-3", "mine")
    assert custom.architecture == "custom" and custom.labels == ["class_0", "class_1", "class_2"]
    assert custom.preprocessing["color"] == "gray"
    with pytest.raises(UnknownArchitecture, match="unknown architecture 'vgg19'; known: cifar-tiny, .*resnet18"):
        resolve("vgg19")


def test_docs_spec_table_matches_the_built_ins():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "SPEC.md").read_text()
    rows = {line.split("|")[1].strip(): line.split("`")[1] for line in doc.splitlines()
            if line.startswith("| ") and line.count("`") == 2 and line.split("|")[1].strip() in ARCHITECTURES}
    assert rows == {name: arch.spec for name, arch in ARCHITECTURES.items() if arch.spec}
