"""Save the tissue map a run logged to TensorBoard as a PNG (the picture README and docs show).

    python scripts/render_tissue_map.py logs/dti_mlp/runs/<run> docs/img/tissue_map.png
        [--tag val/tissue_maps] [--step last|first|N] [--width 700 --colors 256]

Reads the run's event files (tensorboard's EventAccumulator) and writes the encoded image of
`--tag` at the last logged step (or the given one) unchanged: what TensorBoard displays.
`--width` (Lanczos) and `--colors` (a palette PNG) make a smaller file for the docs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def logged_images(run_dir: Path, tag: str) -> list[tuple[int, bytes]]:
    """(step, PNG bytes) of every image logged under `tag` in run_dir's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for events in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        if tag in acc.Tags()["images"]:
            found += [(e.step, e.encoded_image_string) for e in acc.Images(tag)]
    return sorted(found, key=lambda item: item[0])


def smaller(png: bytes, args: argparse.Namespace) -> bytes:
    """The image resized to `args.width` and/or reduced to an `args.colors` palette, as PNG."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if args.width is not None:
        height = round(image.height * args.width / image.width)
        image = image.resize((args.width, height), Image.Resampling.LANCZOS)
    if args.colors is not None:
        # octree keeps the few saturated label colours (median cut merged the callosum's blue)
        octree = Image.Quantize.FASTOCTREE
        image = image.quantize(colors=args.colors, method=octree, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (holds tensorboard/)")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--tag", default="val/tissue_maps")
    parser.add_argument("--step", default="last", help="last, first or a global step")
    parser.add_argument("--width", type=int, default=None, help="resize to this many pixels")
    parser.add_argument("--colors", type=int, default=None, help="palette of this many colours")
    args = parser.parse_args(argv)
    images = logged_images(args.run_dir, args.tag)
    if not images:
        raise SystemExit(f"no image tagged {args.tag!r} under {args.run_dir}")
    if args.step in ("last", "first"):
        step, png = images[-1] if args.step == "last" else images[0]
    else:
        matches = [item for item in images if item[0] == int(args.step)]
        if not matches:
            raise SystemExit(f"no step {args.step}; logged: {[s for s, _ in images]}")
        step, png = matches[-1]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png if args.width is None and args.colors is None else smaller(png, args))
    print(f"{args.out}: {args.tag} at step {step} of {args.run_dir}")
    return args.out


if __name__ == "__main__":
    main()
