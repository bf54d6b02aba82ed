"""Known answers for the priors: Markov-chain entropy, cache == recomputation, MaskGIT keeps
given tokens, save/load identity, and the factorized head's normalization."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from vistok.prior import SamplingConfig, TokenSpace, create_prior, load_prior, save_prior
from vistok.prior.space import group_factors

SPACES = {
    "grid-fsq": TokenSpace((3, 4), "grid", (60,), factors=(3, 4, 5), max_digit=4),
    "seq-vq": TokenSpace((10,), "sequence", (37,)),
    "grid-2codebooks": TokenSpace((2, 3, 2), "grid", (12, 7), factors=(3, 4), max_digit=3),
    "seq-variable": TokenSpace((9,), "sequence", (64000,), factors=(8, 8, 8, 5, 5, 5), variable_length=True),
}


def _ids(space: TokenSpace, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cols = [torch.randint(0, v, (n, *space.spatial), generator=g) for v in space.vocab_sizes]
    return torch.stack(cols, -1) if space.multi_codebook else cols[0]


def test_group_factors_and_digit_roundtrip() -> None:
    assert group_factors([8, 8, 8, 5, 5, 5], 1024) == [512, 125]
    assert group_factors([2] * 18, 512) == [512, 512]
    assert group_factors([7, 3000, 2], 64) == [7, 3000, 2]
    for space in SPACES.values():
        ids = _ids(space, 5)
        digits = space.to_digits(ids)
        assert digits.shape == (5, space.positions, len(space.digit_sizes))
        assert all(int(digits[..., j].max()) < s for j, s in enumerate(space.digit_sizes))
        assert torch.equal(space.from_digits(digits), ids)
    with pytest.raises(ValueError, match="must lie in"):
        SPACES["seq-vq"].to_digits(torch.full((1, 10), 37))


def _markov(vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    trans = torch._sample_dirichlet(torch.full((vocab, vocab), 0.3, dtype=torch.float64), generator=g)
    evals, evecs = torch.linalg.eig(trans.T)
    pi = evecs[:, evals.real.argmax()].real
    return trans, pi / pi.sum()


def _sample_chain(trans: torch.Tensor, pi: torch.Tensor, n: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.multinomial(pi.expand(n, -1), 1, generator=g)
    seq = [x]
    for _ in range(length - 1):
        x = torch.multinomial(trans[x.squeeze(1)], 1, generator=g)
        seq.append(x)
    return torch.cat(seq, 1)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-300).log()).sum(-1)


def test_ar_cross_entropy_reaches_markov_entropy() -> None:
    """Held-out cross-entropy within 5% of the chain's true entropy (factorized head: 12 = 3 x 4)."""
    vocab, length = 12, 16
    trans, pi = _markov(vocab, seed=3)
    true = float((_entropy(pi) + (length - 1) * (pi * _entropy(trans)).sum()) / length)  # nats/token
    space = TokenSpace((length,), "sequence", (vocab,), factors=(3, 4), max_digit=4)
    train, held = _sample_chain(trans, pi, 4096, length, 1), _sample_chain(trans, pi, 1024, length, 2)
    torch.manual_seed(0)
    prior = create_prior("ar:dim=32,depth=1,heads=2,mlp_ratio=2", space)
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    steps = 200
    for step in range(steps):
        batch = train[torch.randint(0, len(train), (64,), generator=g)]
        for group in opt.param_groups:
            group["lr"] = 1e-2 * min(1.0, (step + 1) / 10) * (0.1 + 0.9 * (1 - step / steps))
        loss = prior.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    prior.eval()
    with torch.no_grad():
        ce = float(-prior.log_prob(held).mean() / length)
    assert float(_entropy(pi)) > 1.2 * true  # ignoring the previous token cannot pass
    assert abs(ce - true) / true < 0.05, (ce, true)


@pytest.mark.parametrize("name", list(SPACES))
def test_kv_cache_sampling_equals_recomputation(name: str) -> None:
    space = SPACES[name]
    torch.manual_seed(0)
    prior = create_prior("ar:dim=32,depth=2,heads=2,num_classes=3", space).double().eval()
    for sampling, labels, cfg in [
        (SamplingConfig(), None, 1.0),
        (SamplingConfig(temperature=0.8, top_k=5, top_p=0.9), torch.tensor([0, 2, 1]), 3.0),
    ]:
        a = prior.sample(
            3, labels=labels, cfg_scale=cfg, sampling=sampling, generator=torch.Generator().manual_seed(7)
        )
        b = prior.sample(3, labels=labels, cfg_scale=cfg, sampling=sampling, generator=torch.Generator().manual_seed(7),
                         use_cache=False)  # fmt: skip
        assert a.shape == (3, *space.token_shape)
        assert torch.equal(a, b)
    c = prior.sample(3, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(c, a)  # the seed matters


def test_variable_length_sampling_at_any_k() -> None:
    space = SPACES["seq-variable"]
    for spec in ("ar:dim=32,depth=1,heads=2", "maskgit:dim=32,depth=1,heads=2,steps=3"):
        prior = create_prior(spec, space).eval()
        for k in (1, 4, 9):
            ids = prior.sample(2, num_tokens=k)
            assert ids.shape == (2, k) and int(ids.max()) < 64000
        lengths = torch.tensor([2, 9, 5])
        ids = _ids(space, 3)
        loss = prior.loss(ids, lengths)
        assert torch.isfinite(loss)
        with pytest.raises(ValueError, match="num_tokens"):
            prior.sample(1, num_tokens=10)


def test_ar_ignores_tokens_past_length() -> None:
    space = SPACES["seq-variable"]
    prior = create_prior("ar:dim=32,depth=1,heads=2", space).eval()
    ids = _ids(space, 2)
    other = ids.clone()
    other[:, 4:] = _ids(space, 2, seed=5)[:, 4:]
    lengths = torch.tensor([4, 4])
    assert torch.allclose(prior.log_prob(ids, lengths), prior.log_prob(other, lengths))
    assert not torch.allclose(prior.log_prob(ids), prior.log_prob(other))


@pytest.mark.parametrize("name", list(SPACES))
def test_maskgit_given_tokens_are_kept(name: str) -> None:
    space = SPACES[name]
    torch.manual_seed(0)
    prior = create_prior("maskgit:dim=32,depth=2,heads=2,steps=4", space).eval()
    ids = _ids(space, 3, seed=1)
    assert torch.equal(prior.sample(3, given=ids), ids)
    known = torch.rand(3, space.positions, generator=torch.Generator().manual_seed(2)) < 0.5
    out = prior.sample(3, given=ids, known=known, generator=torch.Generator().manual_seed(3))
    d_in, d_out = space.to_digits(ids), space.to_digits(out)
    assert torch.equal(d_out[known], d_in[known])
    assert (d_out[~known] != d_in[~known]).any()  # the rest was generated


@pytest.mark.parametrize(
    "spec",
    ["ar:dim=32,depth=2,heads=2,num_classes=2", "maskgit:dim=32,depth=2,heads=2,steps=3,num_classes=2"],
)
def test_save_load_identical_samples(spec: str, tmp_path: Path) -> None:
    space = SPACES["grid-fsq"]
    torch.manual_seed(0)
    prior = create_prior(spec, space).eval()
    with torch.no_grad():  # move off the initialization so the weights matter
        for p in prior.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_prior(prior, tmp_path / "p")
    back = load_prior(tmp_path / "p")
    assert back.config == prior.config and back.space == prior.space
    labels = torch.tensor([1, 0, 1, 1])
    a = prior.sample(4, labels=labels, cfg_scale=2.0, generator=torch.Generator().manual_seed(4))
    b = back.sample(4, labels=labels, cfg_scale=2.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    from vistok.prior import PriorCheckpointError

    with pytest.raises(PriorCheckpointError, match=r"config\.json"):
        load_prior(tmp_path)
    prior = create_prior("ar:dim=32,depth=1,heads=2", SPACES["seq-vq"])
    save_prior(prior, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(PriorCheckpointError, match=r"model\.safetensors"):
        load_prior(tmp_path)


def test_factorized_head_is_normalized_and_sums_digits() -> None:
    """p(id) = prod of digit conditionals; summed over every id of the full vocabulary it is 1."""
    space = TokenSpace((2,), "sequence", (60,), factors=(3, 4, 5), max_digit=4)
    assert space.digit_sizes == [3, 4, 5]
    torch.manual_seed(0)
    prior = create_prior("ar:dim=32,depth=2,heads=2", space).double().eval()
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.1 * torch.randn_like(p))
    head = prior.head
    h = torch.randn(5, 32, dtype=torch.float64)
    ids = torch.arange(60)
    digits = space.to_digits(ids[:, None])[:, 0]  # [60, 3]
    lp = head.log_prob(h[:, None].expand(5, 60, 32), digits[None].expand(5, 60, 3))  # [5, 60]
    assert torch.allclose(lp.exp().sum(1), torch.ones(5, dtype=torch.float64), atol=1e-10)
    # the same number from the digit conditionals written out by hand
    z = h[:, None].expand(5, 60, 32)
    manual = torch.zeros(5, 60, dtype=torch.float64)
    for j in range(3):
        manual += (
            head.digit_logits(z, j)
            .log_softmax(-1)
            .gather(-1, digits[None, :, j : j + 1].expand(5, 60, 1))[..., 0]
        )
        if j < 2:
            z = z + head.cond[j](digits[:, j])[None]
    assert torch.allclose(lp, manual, atol=1e-10)
    # the whole prior: every sequence of 2 tokens, 3600 of them, sums to probability 1
    seqs = torch.tensor(list(itertools.product(range(60), repeat=2)))
    with torch.no_grad():
        total = torch.logsumexp(prior.log_prob(seqs).double(), 0)
    assert math.isclose(float(total), 0.0, abs_tol=1e-4)
