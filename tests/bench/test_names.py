"""One name per thing across the bench: labels, folders, curves, suites, metrics, labels of FD."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import vistok
from vistok.bench.data import samples_data
from vistok.bench.metrics.base import MeanAccumulator, Metric
from vistok.bench.metrics.frechet import EXTRACTORS, FeatureExtractor
from vistok.bench.points import Point, curve_key, expand_points, label_from_dirname, point_dirname
from vistok.bench.report import summary_rows, write_report
from vistok.bench.runner import BenchConfig, run_bench
from vistok.cli import main
from vistok.registry import METRICS


@pytest.mark.parametrize(
    "label",
    ["jpeg:quality=30", "vistok-1d@4", "webp@=vistok-1d@64", "diffusers:org/name,subfolder=vae", "a%b c:ü"],
)
def test_folder_names_round_trip_to_the_label(label: str) -> None:
    name = point_dirname(label)
    assert label_from_dirname(name) == label
    assert not set(name) & set('/\\:*?"<>| ')  # safe on Linux, macOS and Windows
    assert point_dirname(Point("jpeg:quality=30")) == "jpeg%3Aquality=30"


def test_curve_key_is_the_spec_without_what_the_sweep_varies() -> None:
    assert curve_key("jpeg:quality=30") == "jpeg"
    assert curve_key("jpeg:quality=30,subsampling=444") == "jpeg:subsampling=444"
    assert curve_key("resize:factor=4") == "resize"
    assert curve_key("diffusers:org/a") != curve_key("diffusers:org/b")
    assert curve_key("vistok-1d") == "vistok-1d"  # @k is not part of the spec
    assert curve_key("webp:bytes=1187", equal_bytes_reference="vistok-f8") == "webp @= vistok-f8"
    assert curve_key("thumbnail:format=jpeg", equal_bytes_reference="x") == "thumbnail:format=jpeg @= x"


def test_two_specs_of_one_family_are_two_curves() -> None:
    def point(spec: str, psnr: float, k: int | None = None) -> dict[str, Any]:
        return {"point": spec, "spec": spec, "num_tokens": k, "rate": {"bpp": 0.1}, "recon": {"psnr": psnr}}

    res = {"points": [point("diffusers:A", 20), point("diffusers:B", 21), point("jpeg:quality=5", 22)]}
    res["points"] += [point("jpeg:quality=50", 30), point("vistok-1d", 15, 4), point("vistok-1d", 16, 8)]
    fams = [r["family"] for r in summary_rows(res)]
    assert fams == ["diffusers:A", "diffusers:B", "jpeg", "jpeg", "vistok-1d", "vistok-1d"]


def test_name_at_k_is_one_point() -> None:
    assert expand_points(["vistok-1d@4"], sweep=True, create=vistok.create) == [Point("vistok-1d", 4)]


def test_unknown_suite_or_feature_network_exits_2_with_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["bench", "-t", "png", "--data", "samples:photos", "-o", str(tmp_path)]
    assert main([*base, "--suites", "recon,txt"]) == 2
    err = capsys.readouterr().err
    assert "'txt'" in err and "Did you mean 'text'" in err and "codebook, face, recon" in err
    assert main([*base, "--features", "incepton"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'inception'" in err and "mobilenet_v2" in err
    assert not any(tmp_path.iterdir())  # nothing ran


class _ToyExtractor(FeatureExtractor):
    """Mean colour and its square: a 6-d feature space, enough to give FD a known label."""

    name, label, dim, preprocessing = "toy", "FD-Toy", 6, "channel means"

    def __init__(self, *, device: str | None = None) -> None:
        pass

    def __call__(self, images: Tensor) -> Tensor:
        m = images.float().mean((2, 3))
        return torch.cat([m, m * m], 1)


class _MaxErrorMetric(Metric):
    """Toy per-image metric: the largest absolute pixel error of each image (lower is better)."""

    name = primary = "max_err"
    label = "max err"
    higher_is_better = False
    per_image = True

    def __init__(self) -> None:
        self.acc = MeanAccumulator()

    def scores(self, originals: Tensor, reconstructions: Tensor) -> Tensor:
        return (originals - reconstructions).abs().flatten(1).amax(1).double()

    def update(
        self, originals: Tensor, reconstructions: Tensor, annotations: Sequence[Any] | None = None
    ) -> None:
        self.acc.add(self.scores(originals, reconstructions))

    def compute(self) -> dict[str, float]:
        return {"max_err": self.acc.mean}

    def reset(self) -> None:
        self.acc.reset()


@pytest.fixture
def toy_registrations() -> Iterator[None]:
    import vistok.bench.metrics  # noqa: F401 - the real metrics first

    def _max_err() -> _MaxErrorMetric:
        """Largest absolute pixel error per image."""
        return _MaxErrorMetric()

    EXTRACTORS.register("toy")(_ToyExtractor)
    METRICS.register("max_err")(_max_err)
    try:
        yield
    finally:  # the registries are process-wide: leave them as found
        EXTRACTORS._entries.pop("toy")
        METRICS._entries.pop("max_err")


def test_a_registered_metric_and_the_feature_label_reach_results_and_report(
    tmp_path: Path, toy_registrations: None
) -> None:
    data = samples_data(("photos",)).subset(2)
    cfg = BenchConfig(suites=("recon",), fd_features="toy")
    res = run_bench(["jpeg:quality=20"], data, cfg, tmp_path, sweep=False, progress=False)
    assert res is not None
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["metrics"]["fd"]["label"] == "FD-Toy"
    assert on_disk["metrics"]["max_err"] == {
        "label": "max err",
        "suite": "recon",
        "primary": "max_err",
        "higher_is_better": False,
        "per_image": True,
    }
    p = on_disk["points"][0]
    errs = [r["max_err"] for r in p["per_image"]]
    assert len(errs) == 2 and all(0 < e <= 1 for e in errs)
    assert p["recon"]["max_err"] == pytest.approx(sum(errs) / 2)
    md, html_path = write_report(on_disk, tmp_path)
    for text in (md.read_text(), html_path.read_text()):
        assert "FD-Toy" in text and "max err" in text and "FD-MobileNetV2" not in text


def test_speed_is_timed_with_warm_up_best_of_n_at_each_batch(tmp_path: Path) -> None:
    data = samples_data(("photos",)).subset(1)
    cfg = BenchConfig(suites=("speed",), speed_batches=(1, 2), speed_repeats=2)
    res = run_bench(["jpeg:quality=50"], data, cfg, tmp_path, sweep=False, progress=False)
    assert res is not None
    s = res["points"][0]["speed"]
    assert s["batch"] == 1 and set(s["by_batch"]) == {"1", "2"} and (s["warmup"], s["repeats"]) == (1, 2)
    assert s["encode_images_per_s"] == s["by_batch"]["1"]["encode_images_per_s"] > 0
    assert s["by_batch"]["2"]["decode_images_per_s"] == pytest.approx(2 / s["by_batch"]["2"]["decode_s"])
    assert list(res["config"]["speed_batches"]) == [1, 2]
