"""What every published name shares: registered, documented, covered by parity fixtures, one interface.

The per-family parity tests live beside this file (``test_zoo_<family>.py``); this one checks
the zoo as a whole, so a name can neither be dropped nor added without its fixtures and docs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import vistok
from vistok.models.zoo import PublishedTokenizer, family_modules
from vistok.models.zoo._base import split_hub
from vistok.registry import TOKENIZERS, SpecError
from vistok.utils.checkpoints import CheckpointError

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "official"

# The names docs/zoo.md promises (the published-tokenizers issue's table).
PUBLISHED = [
    "llamagen-vq16", "llamagen-vq8",
    "titok-l-32", "titok-b-64", "titok-s-128",
    "titok-bl-64-vq", "titok-bl-128-vq", "titok-sl-256-vq",
    "titok-bl-64-vae", "titok-bl-128-vae", "titok-ll-32-vae",
    "one-d-piece-s-256", "one-d-piece-b-256", "one-d-piece-l-256",
    "var-vqvae",
    "open-magvit2-256", "ibq-1024", "ibq-8192", "ibq-16384", "ibq-262144",
    "maskbit-10bit", "maskbit-12bit", "maskbit-14bit", "maskbit-16bit", "maskbit-18bit",
    "vqgan-plus-10bit", "vqgan-plus-12bit", "maskgit-vqgan",
    "taming-f16-1024", "taming-f16-16384",
    "mar-kl16",
    "cosmos-di8", "cosmos-di16", "cosmos-ci8", "cosmos-ci16",
    "taesd", "taesdxl", "taesd3", "taef1", "taef2", "taesana",
]  # fmt: skip


def _published_names() -> list[str]:
    vistok.list()
    return [
        e.name
        for e in TOKENIZERS.entries()
        if isinstance(e.factory, type) and issubclass(e.factory, PublishedTokenizer) and e.base is not None
    ]


def _zoo_tests_text() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "tests" / "models" / "zoo").glob("test_zoo_*.py"))


@pytest.mark.parametrize("name", PUBLISHED)
def test_every_published_name_is_registered_with_a_release(name: str) -> None:
    vistok.list()
    entry = TOKENIZERS.get(name)
    assert isinstance(entry.factory, type) and issubclass(entry.factory, PublishedTokenizer), name
    for key in ("weights", "pretrained", "hub"):
        assert key in entry.params, f"{name}: no {key!r} parameter"
    hub = entry.defaults()["hub"]
    if hub:
        repo, _ = split_hub(hub)  # a well-formed ORG/REPO[/FILE...]
        assert repo.count("/") == 1
    else:  # released outside the Hugging Face Hub (docs/zoo.md says where): pretrained=true says so
        with pytest.raises(SpecError, match="weights="):
            vistok.create(f"{name}:pretrained=true")
    cls = entry.factory
    assert cls.official and cls.formats, f"{cls.__name__}: declare `official` and `formats`"


def test_every_published_name_is_exercised_by_a_parity_test_and_documented() -> None:
    tests = _zoo_tests_text()
    zoo = (ROOT / "docs" / "zoo.md").read_text()
    untested = [n for n in PUBLISHED if not re.search(rf"[\"'`]{re.escape(n)}[\"'`:@,]", tests)]
    undocumented = [n for n in PUBLISHED if f"`{n}`" not in zoo]
    assert not untested, f"no zoo test names {untested}"
    assert not undocumented, f"docs/zoo.md does not list {undocumented}"


def test_no_unlisted_published_names() -> None:
    extra = sorted(set(_published_names()) - set(PUBLISHED))
    zoo = (ROOT / "docs" / "zoo.md").read_text()
    assert all(f"`{n}`" in zoo for n in extra), f"published names missing from docs/zoo.md: {extra}"


def test_fixtures_record_their_official_source() -> None:
    families = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    assert families, "no parity fixtures at all"
    for fam in families:
        src = FIXTURES / fam / "SOURCE.json"
        assert src.is_file(), f"{src} missing"
        meta = json.loads(src.read_text())
        assert re.fullmatch(r"[0-9a-f]{40}", meta["commit"]), f"{src}: commit {meta['commit']!r}"
        assert meta["official_repository"].count("/") == 1
        for case in meta["cases"]:
            assert (FIXTURES / fam / case).is_dir(), f"{src} lists case {case!r}, which is missing"
        assert (ROOT / "scripts" / "official_fixtures" / f"{fam}.py").is_file()


def test_fixtures_stay_small() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 12 * 2**20, f"parity fixtures hold {total / 2**20:.1f} MiB"


def test_family_modules_are_found_without_a_list() -> None:
    assert family_modules(), "no family module in vistok/models/zoo"
    for mod in family_modules():
        assert not mod.startswith("_")


def _small_name() -> str:
    """A published name that builds fast at its full size (for interface checks)."""
    return "taesd" if "taesd" in TOKENIZERS else _published_names()[0]


def test_weights_and_pretrained_together_is_an_error() -> None:
    with pytest.raises(SpecError, match="not both"):
        vistok.create(f"{_small_name()}:pretrained=true,weights=/x.pt")


def test_missing_weights_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nothing\.pt: no such file"):
        vistok.create(_small_name(), weights=str(tmp_path / "nothing.pt"))


def test_pretrained_offline_is_one_line_naming_repo_file_and_local_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nYou are offline.")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    name = _small_name()
    hub = TOKENIZERS.get(name).defaults()["hub"]
    repo, files = split_hub(hub)
    with pytest.raises(SpecError) as e:
        vistok.create(f"{name}:pretrained=true")
    msg = str(e.value)
    assert "\n" not in msg
    assert repo in msg and all(f in msg for f in files)
    assert "weights=PATH" in msg and "offline" in msg


def test_random_weights_build_and_round_trip_contract() -> None:
    name = _small_name()
    torch.manual_seed(0)
    tok = vistok.create(name)
    assert tok.weights_source is None and not tok.training
    size = tok.input_size or 64
    x = torch.rand(1, 3, size, size)
    y = tok.decode(tok.encode(x))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


def test_base_rejects_mismatched_state(tmp_path: Path) -> None:
    """The base's check: missing, unexpected and mis-shaped tensors are one-line errors naming the file."""
    name = _small_name()
    tok = vistok.create(name)
    state = tok.state_dict()
    k0 = next(iter(state))
    with pytest.raises(CheckpointError, match=r"x\.pt: not a .* missing 1"):
        tok._load_checked({k: v for k, v in state.items() if k != k0}, Path("x.pt"))
    with pytest.raises(CheckpointError, match=r"x\.pt: .*unexpected 1 \(bogus\.weight\)"):
        tok._load_checked({**state, "bogus.weight": torch.zeros(1)}, Path("x.pt"))
    bad = dict(state)
    bad[k0] = torch.zeros(*[d + 1 for d in state[k0].shape])
    with pytest.raises(CheckpointError, match=rf"x\.pt: tensor '{re.escape(k0)}' has shape"):
        tok._load_checked(bad, Path("x.pt"))


def test_cli_convert_writes_a_loadable_folder(tmp_path: Path) -> None:
    """``vistok convert`` end to end on the first family fixture whose case says how to build it."""
    from vistok.cli import main

    for case_json in sorted(FIXTURES.glob("*/*/case.json")):
        case = json.loads(case_json.read_text())
        if "spec" in case and "weights" in case:
            break
    else:
        pytest.fail("no fixture case.json has both 'spec' and 'weights' (the official file, relative)")
    src = case_json.parent / case["weights"]
    out = tmp_path / "converted"
    assert main(["convert", case["spec"], str(src), "-o", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert "weights" not in cfg["config"] and "pretrained" not in cfg["config"]  # not architecture
    back = vistok.load(out)
    ref = vistok.create(case["spec"], weights=str(src))
    size = ref.input_size or 32 * ref.stride
    x = torch.rand(1, 3, size, size)
    a, b = ref.encode(x), back.encode(x)
    if a.ids is not None:
        assert torch.equal(a.ids, b.ids)
    else:
        assert torch.equal(a.latents, b.latents)
