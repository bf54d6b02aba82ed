"""Codecs at each image's own tokenizer byte count: budgets, points, resume, report, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

import vistok
from vistok.bench.data import samples_data
from vistok.bench.report import equal_bytes_rows, summary_rows, write_report
from vistok.bench.runner import BenchConfig, Point, budgets_from, equal_bytes_points, run_bench
from vistok.cli import main
from vistok.data.images import load_image_uint8
from vistok.data.transforms import apply_fit, plan_fit
from vistok.models.codecs import from_uint8
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens


class _PngGrid(Tokenizer):
    """A deterministic stand-in for a learned tokenizer (kind ``"discrete"``): its rate is a
    PNG of the image shrunk 12x plus 3 bits, so it differs per image and is not whole bytes."""

    kind = "discrete"

    def __init__(self) -> None:
        super().__init__()
        self.inner = vistok.create("resize:factor=12")
        self.vocab_size = 256
        self.spec = self.family = "pnggrid"

    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        t = self.inner.encode(images)
        ids = torch.zeros(images.shape[0], 1, dtype=torch.long)
        return Tokens(bits=t.bits + 3.0, ids=ids, meta=t.meta)

    def decode(self, tokens: Tokens) -> Tensor:
        return self.inner.decode(tokens)


def _create(spec: str) -> Tokenizer:
    return _PngGrid() if spec == "pnggrid" else vistok.create(spec)


def _fitted(path: Path) -> Tensor:
    img = load_image_uint8(path)
    return from_uint8(apply_fit(img, plan_fit(*img.shape[:2], size=256))[None])


def test_budgets_are_the_tokenizers_bits_rounded_up_to_bytes() -> None:
    rows = [
        {"file": "a", "bits": 1024.0},
        {"file": "b", "bits": 1025.0},
        {"file": "c", "bits": 79.7263},
        {"file": "d", "bits": 1024.0000000001},  # float noise is not a byte more
        {"file": "e", "bits": math.nan},  # no rate: no budget
    ]
    assert budgets_from({"per_image": rows}) == {"a": 128, "b": 129, "c": 10, "d": 128}


def test_equal_bytes_points_pair_every_learned_point_with_every_codec() -> None:
    made = {"latent1d-tiny": vistok.create("latent1d-tiny")}
    create = lambda s: made.get(s) or vistok.create(s)  # noqa: E731
    points = [Point("latent1d-tiny", 2), Point("latent1d-tiny", 8), Point("jpeg:quality=5"), Point("png")]
    eq = equal_bytes_points(points, ["thumbnail", "webp"], create=create)
    assert [p.label for p in eq] == [
        "thumbnail@=latent1d-tiny@2",
        "webp@=latent1d-tiny@2",
        "thumbnail@=latent1d-tiny@8",
        "webp@=latent1d-tiny@8",
    ]  # codec points get none: they are the baselines themselves
    assert eq[0].budget_of == Point("latent1d-tiny", 2)
    with pytest.raises(vistok.registry.SpecError, match="not a codec with a byte budget"):
        equal_bytes_points(points, ["png"], create=create)


def test_equal_bytes_points_use_each_images_own_budget(tmp_path: Path) -> None:
    data = samples_data(("photos", "text")).subset(3)
    thumbnail = vistok.create("thumbnail")
    asked: list[int] = []  # every budget the runner hands the codec, in image order
    with_budget = thumbnail.with_budget
    thumbnail.with_budget = lambda n: asked.append(n) or with_budget(n)  # type: ignore[method-assign]
    res = run_bench(
        ["pnggrid"],
        data,
        BenchConfig(suites=()),  # pixel metrics only: budgets are what is tested
        tmp_path,
        sweep=False,
        progress=False,
        create=lambda s: thumbnail if s == "thumbnail" else _create(s),
        equal_bytes=["thumbnail", "webp"],
    )
    assert res is not None
    ref, thumb, webp = res["points"]
    assert [ref["point"], thumb["point"], webp["point"]] == ["pnggrid", "thumbnail@=pnggrid", "webp@=pnggrid"]
    want = {r["file"]: math.ceil(r["bits"] / 8) for r in ref["per_image"]}
    assert len(want) == 6 and len(set(want.values())) >= 5  # really per image
    assert asked == [want[it.rel] for it in data.items]  # exactly ceil(bits / 8) of that image
    paths = {it.rel: it.path for it in data.items}
    for point, spec in ((thumb, "thumbnail"), (webp, "webp")):
        assert point["equal_bytes"]["reference"] == "pnggrid" and point["images"] == 6
        assert {r["file"]: r["budget_bytes"] for r in point["per_image"]} == want
        for row in point["per_image"]:
            # the same file as the codec created with that image's budget, directly
            direct = vistok.create(f"{spec}:bytes={row['budget_bytes']}").encode(_fitted(paths[row["file"]]))
            assert row["bits"] == float(direct.bits[0])
            assert (
                row["over_budget"] == (row["bits"] > 8 * row["budget_bytes"]) == direct.meta["over_budget"][0]
            )
    assert not any(r["over_budget"] for r in thumb["per_image"])  # the thumbnail never exceeds
    over = [r["over_budget"] for r in webp["per_image"]]
    assert any(over) and not all(over)  # full-size WebP: some budgets too small, honestly flagged
    assert webp["equal_bytes"]["over_budget"] == sum(over) == 6 - webp["equal_bytes"]["images_that_fit"]
    # the report: its own series and table
    assert {r["family"] for r in summary_rows(res)} == {"pnggrid", "thumbnail @= pnggrid", "webp @= pnggrid"}
    table = equal_bytes_rows(res)
    assert [r[0] for r in table] == ["pnggrid", "thumbnail@=pnggrid", "webp@=pnggrid"]
    assert table[2][-1] == f"{sum(over)} of 6"
    md, html_path = write_report(res, tmp_path)
    assert "## Equal bytes" in md.read_text() and "thumbnail@=pnggrid" in html_path.read_text()


def test_points_no_codec_file_fits_are_recorded_not_run_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # latent1d-tiny: 1..8 tokens of ~10 bits, 2..10 bytes per image: below any WebP file
    data = samples_data(("photos",)).subset(2)
    cfg = BenchConfig(suites=())
    kw = {"progress": False, "equal_bytes": ["thumbnail", "webp"]}
    torch.manual_seed(0)
    vistok.create("latent1d-tiny").save_pretrained(tmp_path / "ck")
    ck = str(tmp_path / "ck")
    res = run_bench([ck, "webp:quality=0"], data, cfg, tmp_path / "run", sweep=True, **kw)
    assert res is not None
    labels = [p["point"] for p in res["points"]]
    assert labels[0] == f"{ck}@1" and labels[-1] == "webp:quality=0"
    # a fixed token count spends the same bytes on every image: the label is the codec's spec
    assert labels[1].startswith("thumbnail:bytes=") and labels[2].startswith("webp:bytes=")
    assert vistok.create(labels[2]).byte_budget == res["points"][2]["equal_bytes"]["budget_bytes"]["max"]
    eq = [p for p in res["points"] if p.get("equal_bytes")]
    assert len(eq) == 8
    for p in eq:
        assert p["images"] == 0 and p["per_image"] == [] and "file fits" in p["equal_bytes"]["not_run"]
        assert p["equal_bytes"]["budget_bytes"]["max"] <= 10 < p["equal_bytes"]["smallest_file_bytes"]["min"]
    assert not {p["point"] for p in eq} & {
        r["point"] for r in summary_rows(res)
    }  # no numbers: not in the main table
    table = equal_bytes_rows(res)
    assert sum("no WEBP file fits" in r[-1] for r in table) == 8
    write_report(res, tmp_path / "run")

    import vistok.bench.runner as runner

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("a finished point was recomputed")

    monkeypatch.setattr(runner, "run_point", boom)
    monkeypatch.setattr(runner, "run_equal_bytes_point", boom)
    again = run_bench([ck, "webp:quality=0"], data, cfg, tmp_path / "run", sweep=True, **kw)
    assert again is not None and [p["point"] for p in again["points"]] == labels


def test_cli_default_run_adds_thumbnail_and_webp_at_equal_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import vistok.bench.runner as runner
    from vistok.bench.cli import DEFAULT_EQUAL_BYTES

    seen: list[dict[str, object]] = []

    class Stop(Exception):
        pass

    def fake(specs: list[str], *a: object, **k: object) -> None:
        seen.append({"specs": specs, **k})
        raise Stop

    monkeypatch.setattr(runner, "run_bench", fake)
    for argv, want in (
        ([], DEFAULT_EQUAL_BYTES),
        (["--equal-bytes", "none"], []),
        (["-t", "jpeg"], []),
        (["-t", "jpeg", "--equal-bytes", "thumbnail:format=jpeg", "--equal-bytes", "avif"], None),
    ):
        with pytest.raises(Stop):
            main(["bench", "--data", "samples:photos", *argv])
        assert seen[-1]["equal_bytes"] == (want if want is not None else ["thumbnail:format=jpeg", "avif"])
    assert DEFAULT_EQUAL_BYTES == ["thumbnail", "webp"]


def test_cli_rejects_a_codec_without_budget(tmp_path: Path) -> None:
    argv = [
        "bench",
        "-t",
        "latent1d-tiny",
        "--equal-bytes",
        "png",
        "--data",
        "samples:photos",
        "-o",
        str(tmp_path),
    ]
    assert main(argv) == 2


@pytest.mark.slow
def test_two_ranks_give_the_single_process_equal_bytes_points(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vistok.create("conv2d-tiny").save_pretrained(tmp_path / "ck")  # the same weights on every rank
    common = ["bench", "-t", str(tmp_path / "ck"), "--equal-bytes", "thumbnail", "--equal-bytes", "webp"]
    common += ["--data", "samples:photos", "--limit", "2", "--suites", "recon", "-o", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {
        "single": [sys.executable, "-m", "vistok"],
        "sharded": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
    }
    runs["sharded"] += ["-m", "vistok"]
    for name, cmd in runs.items():
        proc = subprocess.run(
            [*cmd, *common, "--name", name], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in runs)
    assert [p["point"] for p in a["points"]] == [p["point"] for p in b["points"]]
    assert len(a["points"]) == 3 and b["shards"] == 2
    for pa, pb in zip(a["points"], b["points"], strict=True):
        assert pa["per_image"] == pb["per_image"]


def test_baselines_get_no_equal_bytes_points(tmp_path: Path) -> None:
    """The pca baseline is itself a reference: no codec is put at its bytes."""
    pca = vistok.create("pca:basis_size=8,tokens=2,coeffs_per_token=1,bits=4").fit(torch.rand(8, 3, 8, 8))
    pca.save_pretrained(tmp_path / "pca")
    learned = vistok.create("conv2d-tiny")
    learned.save_pretrained(tmp_path / "f8")
    points = [Point(str(tmp_path / "pca"), 1), Point(str(tmp_path / "f8")), Point("webp:quality=50")]
    eq = equal_bytes_points(points, ["thumbnail"], create=vistok.create)
    assert [p.budget_of.spec for p in eq] == [str(tmp_path / "f8")]
