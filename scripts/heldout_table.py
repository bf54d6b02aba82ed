"""Markdown table of a bench run's points (``scripts/bench_heldout.sh``): bytes, bpp, PSNR, SSIM, FD, DFD.

python scripts/heldout_table.py results/heldout-v2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    rows = []
    for f in sorted(Path(sys.argv[1], "points").glob("*.json")):
        r = json.loads(f.read_text())
        rec = r.get("recon") or {}
        if not r.get("images") or "psnr" not in rec:
            rows.append((r["point"], None, None, None, None, None, None, r.get("images", 0)))
            continue
        bits = r["rate"]["bits_per_image"]
        fd = (rec.get("fd") or {}).get("fd")
        dfd = (rec.get("dfd") or {}).get("dfd")
        rows.append((r["point"], bits / 8, r["rate"]["bpp"], rec["psnr"], rec["ssim"], fd, dfd, r["images"]))
    rows.sort(key=lambda t: (t[0].split("@")[0], t[1] or 0))
    print("| point | bytes/image | bpp | PSNR | SSIM | FD-MobileNetV2 | DFD | images |")
    print("|---|---|---|---|---|---|---|---|")
    for p, by, bpp, psnr, ssim, fd, dfd, n in rows:
        if psnr is None:
            print(f"| {p} | – | – | – | – | – | – | {n} (budget not reachable) |")
            continue
        fds = f"{fd:.1f}" if fd is not None else "–"
        dfds = f"{dfd:.3f}" if dfd is not None else "–"
        print(f"| {p} | {by:.0f} | {bpp:.4f} | {psnr:.2f} | {ssim:.3f} | {fds} | {dfds} | {n} |")


if __name__ == "__main__":
    main()
