"""``vistok prior train|sample`` and ``vistok probe``.

* ``vistok prior train TOKENS -o RUN [--prior SPEC] [--set key=value ...] [--resume]``: train a
  prior on a token dataset written by ``vistok tokenize`` (torchrun for DDP).
* ``vistok prior sample RUN -n N -o DIR``: sample ``N`` token sets and write them as PNGs,
  decoded by the tokenizer recorded in the token dataset's manifest.
* ``vistok probe -t SPEC [-t SPEC ...] -o OUT``: the generation probe
  (:mod:`vistok.prior.probe`) for each tokenizer, then ``OUT/report.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["add_command"]


def _parse_sets(pairs: list[str] | None, allowed: dict[str, Any]) -> dict[str, Any]:
    """``key=value`` strings -> typed values (JSON when it parses, else the string)."""
    from vistok.cli import UsageError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or key not in allowed:
            raise UsageError(
                f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(allowed))}"
            )
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def cmd_prior_train(args: argparse.Namespace) -> int:
    from vistok.cli import UsageError
    from vistok.data.token_dataset import TokenDataset
    from vistok.prior.space import TokenSpace
    from vistok.prior.train import PriorTrainConfig, PriorTrainer, TokenData
    from vistok.registry import SpecError
    from vistok.train.dist import cleanup

    try:
        ds = TokenDataset(args.tokens)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    if ds.field != "ids":
        raise UsageError(f"{args.tokens}: holds continuous latents; priors model discrete ids")
    sets = _parse_sets(args.set, {f.name: f for f in fields(PriorTrainConfig)})
    if args.prior:
        sets["prior"] = args.prior
    cfg = PriorTrainConfig(**sets)
    space = TokenSpace.from_dataset(ds, max_digit=cfg.max_digit)
    data = TokenData(ds.ids(), ds.lengths() if ds.variable_length else None)
    extra = {"tokens": {"path": str(Path(args.tokens).resolve()), "tokenizer": ds.tokenizer,
                        "tokens_meta": ds.manifest.get("tokens_meta", {})}}  # fmt: skip
    try:
        summary = PriorTrainer(cfg, space, data, args.output, resume=args.resume, extra=extra).fit()
    except SpecError as e:
        raise UsageError(str(e)) from None
    finally:
        cleanup()
    if summary["model"] is not None:
        last = summary["last"]
        print(f"trained {summary['step']} steps ({last.get('bits_per_token', float('nan')):.3f} bits/token); "
              f"prior: {summary['model']} (vistok prior sample {args.output} -n N -o DIR)")  # fmt: skip
    return 0


def cmd_prior_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import vistok
    from vistok.cli import UsageError, _write_png
    from vistok.prior.base import PriorCheckpointError, load_prior, read_prior_config
    from vistok.prior.decode import decode_ids
    from vistok.prior.sampling import SamplingConfig

    model_dir = Path(args.run) / "model" if (Path(args.run) / "model").is_dir() else Path(args.run)
    try:
        prior = load_prior(model_dir)
        cfg = read_prior_config(model_dir)
    except PriorCheckpointError as e:
        raise UsageError(str(e)) from None
    tokens = cfg.get("tokens", {})
    spec = args.tokenizer or tokens.get("tokenizer")
    if not spec:
        raise UsageError(f"{model_dir}: no tokenizer recorded; pass -t SPEC")
    tok = vistok.create(spec).eval()
    labels = None
    if args.label is not None:
        labels = torch.full((args.num,), args.label, dtype=torch.long)
    gen = torch.Generator().manual_seed(args.seed)
    sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
    out = Path(args.output)
    from tqdm.auto import tqdm

    done = 0
    with tqdm(total=args.num, unit="img", desc="sample", disable=None) as bar:
        while done < args.num:
            n = min(args.batch_size, args.num - done)
            lab = None if labels is None else labels[done : done + n]
            ids = prior.sample(n, num_tokens=args.num_tokens, labels=lab, cfg_scale=args.cfg_scale,
                               sampling=sampling, generator=gen)  # fmt: skip
            images = decode_ids(tok, ids, prior.space, tokens.get("tokens_meta", {}))
            for i, im in enumerate(images):
                _write_png(out / f"sample-{done + i:05d}.png", np.ascontiguousarray(im))
            done += n
            bar.update(n)
    print(f"{done} sample(s) -> {out} (tokenizer {spec})")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from vistok.cli import UsageError
    from vistok.prior.probe import ProbeConfig, probe_report, run_probe

    sets = _parse_sets(args.set, {f.name: f for f in fields(ProbeConfig)})
    try:
        cfg = ProbeConfig(**sets)
    except TypeError as e:
        raise UsageError(str(e)) from None
    names = args.name or []
    if names and len(names) != len(args.tokenizer):
        raise UsageError("--name must be given once per -t (or not at all)")
    failed = []
    for i, spec in enumerate(args.tokenizer):
        name = names[i] if names else spec.replace("/", "_").replace(":", "_")[:60]
        try:
            r = run_probe(spec, Path(args.output) / name, cfg)
        except (ValueError, FileNotFoundError) as e:
            failed.append((spec, str(e)))
            print(f"probe {spec}: {e}", file=sys.stderr)
            continue
        h, g = r["heldout_nll"], r["generation"]
        print(f"{name}: {h['bits_per_token']:.3f} bits/token, {h['bits_per_image']:.0f} bits/image, "
              f"gFD {g['fd_mobilenet_v2']:.2f}, gKID {g['kid_mobilenet_v2']:.4f}")  # fmt: skip
    print(probe_report(args.output))
    return 1 if failed and len(failed) == len(args.tokenizer) else 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("prior", help="train and sample priors over token datasets")
    psub = p.add_subparsers(dest="prior_command", required=True)

    t = psub.add_parser("train", help="train a prior on a token dataset (torchrun for DDP)")
    t.add_argument("tokens", help="token dataset folder (vistok tokenize)")
    t.add_argument("-o", "--output", required=True, help="run folder (checkpoints/, metrics.jsonl, model/)")
    t.add_argument("--prior", default=None, help="prior spec, e.g. ar:dim=256,depth=6 or maskgit:steps=12")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="training option (steps, lr, batch_size, ema, ...)",
    )
    t.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in the run folder"
    )
    t.set_defaults(func=cmd_prior_train)

    s = psub.add_parser("sample", help="sample a trained prior and write decoded PNGs")
    s.add_argument("run", help="prior run folder (or its model/ folder)")
    s.add_argument("-n", "--num", type=int, required=True, help="images to sample")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("-t", "--tokenizer", default=None, help="override the tokenizer recorded with the tokens")
    s.add_argument("--num-tokens", type=int, default=None, help="1D variable-length tokens: sample this many")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--label", type=int, default=None, help="class label (class-conditional priors)")
    s.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_prior_sample)

    q = sub.add_parser(
        "probe", help="generation probe: tokenize the corpus, train a fixed prior, score samples"
    )
    q.add_argument(
        "-t", "--tokenizer", action="append", required=True, help="tokenizer spec or folder (repeatable)"
    )
    q.add_argument(
        "-o", "--output", required=True, help="output folder (one subfolder per tokenizer + report.md)"
    )
    q.add_argument("--name", action="append", help="subfolder name per -t (default: from the spec)")
    q.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="probe option (see vistok.prior.probe.ProbeConfig)",
    )
    q.set_defaults(func=cmd_probe)
