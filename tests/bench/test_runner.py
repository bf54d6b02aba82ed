"""The bench pipeline end to end on a tiny subset with codec tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vistok
from vistok.bench.data import folder_data, samples_data
from vistok.bench.report import leaderboard, write_report
from vistok.bench.runner import BenchConfig, Point, expand_points, run_bench
from vistok.cli import main
from vistok.data.images import load_image_uint8
from vistok.data.transforms import apply_fit, plan_fit

FAST = ("recon", "codebook", "robustness", "speed")


def test_expand_points_sweeps_codecs_only_when_asked() -> None:
    assert expand_points(["jpeg:quality=40"], sweep=True, create=vistok.create) == [Point("jpeg:quality=40")]
    pts = expand_points(["jpeg", "png"], sweep=True, create=vistok.create)
    assert len(pts) == 7 and pts[0].spec == "jpeg:quality=5" and pts[-1] == Point("png")


def test_bench_numbers_match_direct_computation(tmp_path: Path) -> None:
    import skimage.metrics as skm

    data = samples_data(("photos",)).subset(2)
    res = run_bench(
        ["jpeg:quality=40"], data, BenchConfig(suites=("recon",)), tmp_path, sweep=False, progress=False
    )
    assert res is not None
    point = res["points"][0]
    # recompute PSNR and bpp of the first image by hand with Pillow + scikit-image
    img = load_image_uint8(data.items[0].path)
    fitted = apply_fit(img, plan_fit(*img.shape[:2], size=256))
    import io

    buf = io.BytesIO()
    Image.fromarray(fitted).save(buf, format="JPEG", quality=40, optimize=True, subsampling="4:2:0")
    rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    row = point["per_image"][0]
    assert row["bits"] == 8 * len(buf.getvalue())
    assert row["bpp"] == pytest.approx(8 * len(buf.getvalue()) / 256**2)
    assert row["psnr"] == pytest.approx(skm.peak_signal_noise_ratio(fitted, rec, data_range=255), abs=1e-4)
    assert point["recon"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in point["per_image"]]))
    assert res["protocol"]["version"] == "vistok-protocol/1"
    assert res["data"]["sha256"] == data.sha256 and res["environment"]["threads"] >= 1


def test_resume_skips_finished_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = samples_data(("photos",)).subset(1)
    cfg = BenchConfig(suites=("recon",))
    run_bench(["png", "jpeg:quality=20"], data, cfg, tmp_path, sweep=False, progress=False)
    import vistok.bench.runner as runner

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("a finished point was recomputed")

    monkeypatch.setattr(runner, "run_point", boom)
    res = run_bench(["png", "jpeg:quality=20"], data, cfg, tmp_path, sweep=False, progress=False)
    assert res is not None and [p["point"] for p in res["points"]] == ["png", "jpeg:quality=20"]


def test_folder_without_annotations_and_bad_file(tmp_path: Path, photo: np.ndarray) -> None:
    d = tmp_path / "data"
    d.mkdir()
    Image.fromarray(photo).save(d / "cat.png")
    (d / "broken.png").write_bytes(b"not a png")
    data = folder_data(d)
    res = run_bench(
        ["webp:quality=30"],
        data,
        BenchConfig(suites=("recon", "text", "face")),
        tmp_path / "o",
        sweep=False,
        progress=False,
    )
    assert res is not None
    p = res["points"][0]
    assert p["images"] == 1 and p["skipped_images"][0][0].endswith("broken.png")
    assert "no annotations" in p["skipped_suites"]["text"] and "no annotations" in p["skipped_suites"]["face"]
    md, html_path = write_report(res, tmp_path / "o")
    text = md.read_text()
    assert "text skipped for webp: no annotations" in text and "broken.png" in text
    assert "<img src='data:image/png;base64," in html_path.read_text()


def test_missing_optional_dependency_is_a_reason_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vistok.bench.metrics  # noqa: F401 - registers the metrics
    from vistok.registry import METRICS

    monkeypatch.setattr(
        METRICS.get("text"), "available", lambda: "rapidocr is not installed (pip install vistok[bench])"
    )
    data = samples_data(("text",)).subset(1)
    res = run_bench(["png"], data, BenchConfig(suites=("text",)), tmp_path, sweep=False, progress=False)
    assert res is not None
    assert res["points"][0]["skipped_suites"]["text"].startswith("rapidocr is not installed")


def test_cli_bench_and_report_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "bench",
        "-t",
        "resize:factor=4",
        "--no-sweep",
        "--limit",
        "1",
        "--suites",
        ",".join(FAST),
        "--data",
        "samples:photos",
        "-o",
        str(tmp_path),
        "--name",
        "a",
    ]
    assert main(args) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["schema"] == "vistok.bench.results/1"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "a"), "-o", str(tmp_path / "lb.md")]) == 0
    assert "resize" in (tmp_path / "lb.md").read_text()
    assert "resize" in leaderboard([tmp_path / "a"])
    assert main(["bench", "-t", "jpge", "--data", "samples:photos", "-o", str(tmp_path)]) == 2


def test_perturbation_swaps_about_alpha_of_tokens_for_near_codes() -> None:
    import torch

    from vistok.bench.items import Perturbation, perturb

    tok = vistok.create("conv2d-tiny:quantizer=[vq:codebook_size=64]")
    tokens = tok.encode(torch.rand(2, 3, 64, 64))
    pert, note = perturb(tok, tokens, Perturbation(alpha=0.25, delta=3), torch.Generator().manual_seed(0))
    changed = pert.ids != tokens.ids
    assert 0.15 < changed.double().mean() < 0.35 and "alpha=0.25" in note
    nb = tok.neighbours(tokens.ids, 3)
    assert (pert.ids[changed].unsqueeze(-1) == nb[changed]).any(-1).all()  # replaced by one of its 3 nearest
    assert not changed.all() and pert.ids is not tokens.ids


def test_codebook_use_known_answer() -> None:
    import torch

    from vistok.bench.suites import _CodebookCounts as _Codebook

    cb = _Codebook(4)
    cb.add(torch.tensor([[0, 1, 2, 3, 9, 9]]), torch.tensor([4]))  # ids past the length are padding
    out = cb.compute()
    assert out["used_fraction"] == 1.0 and out["entropy_bits"] == pytest.approx(2.0)
    assert out["perplexity"] == pytest.approx(4.0) and out["nominal_bits"] == 2.0
    two = _Codebook(4)
    two.add(torch.tensor([[[0, 1], [0, 1]]]), None, num_codebooks=2)  # K = 2 codebooks
    assert two.compute()["used_fraction"] == pytest.approx(2 / 8) and two.compute()["entropy_bits"] == 0.0


def test_fixed_size_tokenizer_is_scored_on_the_evaluation_square(tmp_path: Path) -> None:
    tok = vistok.create("latent1d-tiny")
    assert tok.input_size is not None and tok.input_size < 256
    data = samples_data(("photos",)).subset(1)
    cfg = BenchConfig(suites=("recon", "robustness"))
    res = run_bench(["latent1d-tiny"], data, cfg, tmp_path, sweep=False, progress=False)
    assert res is not None
    p = res["points"][0]
    assert p["eval_size"] == 256 and p["model_size"] == tok.input_size
    row = p["per_image"][0]
    assert row["bpp"] == pytest.approx(row["bits"] / 256**2)  # rate per pixel of the evaluation square
    assert not np.isnan(row["ms_ssim"])  # metrics at 256, where MS-SSIM's 5 scales fit
    assert p["robustness"]["psnr"] > 0  # the perturbed decode is resized back like the clean one


class _Flaky:
    """Wraps a tokenizer; its encode fails once after ``fail_after`` calls (an interruption)."""

    def __init__(self, spec: str, fail_after: int | None):
        self.inner = vistok.create(spec)
        self.fail_after = fail_after
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def to(self, device: object) -> _Flaky:
        self.inner.to(device)
        return self

    def encode(self, *a: object, **k: object) -> object:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        return self.inner.encode(*a, **k)


def test_interrupted_point_resumes_per_image_with_identical_results(tmp_path: Path) -> None:
    import torch

    spec = "conv2d-tiny:quantizer=[vq:codebook_size=64]"
    torch.manual_seed(0)
    vistok.create(spec).save_pretrained(tmp_path / "ck")  # same weights in every run
    ck = str(tmp_path / "ck")
    data = samples_data(("photos", "text")).subset(3)
    cfg = BenchConfig(suites=("recon", "text", "codebook", "robustness"))
    straight = run_bench([ck], data, cfg, tmp_path / "a", sweep=False, progress=False)

    first = _Flaky(ck, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        run_bench([ck], data, cfg, tmp_path / "b", sweep=False, progress=False, create=lambda s: first)
    partial = list((tmp_path / "b" / "points").glob("*.partial"))
    assert len(partial) == 1 and len(list(partial[0].glob("*.npz"))) == 4
    second = _Flaky(ck, fail_after=None)
    resumed = run_bench([ck], data, cfg, tmp_path / "b", sweep=False, progress=False, create=lambda s: second)
    assert second.calls == len(data.items) - 4  # only the images not reached before
    assert not list((tmp_path / "b" / "points").glob("*.partial"))  # cache removed when done
    a, b = straight["points"][0], resumed["points"][0]
    for key in ("per_image", "recon", "text", "codebook", "robustness", "rate"):
        assert a[key] == b[key], key


def test_worst_text_cases_are_real_failures(tmp_path: Path) -> None:
    import re

    data = samples_data(("text",)).subset(2)
    res = run_bench(
        ["jpeg:quality=5"], data, BenchConfig(suites=("text",)), tmp_path, sweep=False, progress=False
    )
    assert res is not None
    cases = res["points"][0]["text_worst"]
    assert 1 <= len(cases) <= 6
    for c in cases:
        text, pred = re.search(r"'(.*)' read as '(.*)' \(height", c["caption"]).groups()
        assert text != pred and c["original_png"] and c["reconstruction_png"]
