"""Save a reference / accelerated pair of reconstructions side by side as a PNG.

    python scripts/render_recon_pair.py data/recon_synthetic/<hash>/recon docs/img/recon_pair.png
        [--volume file_brain_AXT2_sim_0000] [--slice 4] [--tags reference_matched_R4 pics_R4]

Reads `<recon_dir>/<tag>/<volume>.h5` (the `reconstruction` dataset scripts/reconstruct.py and
the recon-quality cache write), crops to 320 x 320 as the data module does, and draws the two
magnitudes on one grey scale (the reference's 99th percentile) with their difference x 5.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recon_dir", type=Path, help="folder of <tag>/<volume>.h5")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--volume", help="file stem (default: the first of the first tag)")
    parser.add_argument("--slice", type=int, default=None, help="slice index (default: middle)")
    parser.add_argument("--tags", nargs=2, default=["reference_matched_R4", "pics_R4"])
    args = parser.parse_args(argv)
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    first = args.recon_dir / args.tags[0]
    volume = args.volume or sorted(p.stem for p in first.glob("*.h5"))[0]
    images = []
    for tag in args.tags:
        with h5py.File(args.recon_dir / tag / f"{volume}.h5") as f:
            rec = f["reconstruction"]
            index = rec.shape[0] // 2 if args.slice is None else args.slice
            image = np.abs(np.asarray(rec[index]))
        h, w = image.shape
        top, left = max(0, (h - 320) // 2), max(0, (w - 320) // 2)
        images.append(image[top : top + 320, left : left + 320])
    vmax = float(np.percentile(images[0], 99))
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    titles = [*args.tags, f"|{args.tags[1]} - {args.tags[0]}| x 5"]
    panels = [*images, 5 * np.abs(images[1] - images[0])]
    for ax, image, title in zip(axes, panels, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{volume}, slice {index}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"{args.out}: {volume} slice {index}, tags {args.tags}")
    return args.out


if __name__ == "__main__":
    main()
