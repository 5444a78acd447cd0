"""Write a large synthetic voxel table (one row per voxel) for load tests of data.source=table.

    PYTHONPATH=src python scripts/make_voxel_table.py --out /tmp/voxels.parquet --rows 10000000

Columns T1w, FA, MD, AD, RD (MD/AD/RD in um^2/ms), label (1-based class), subject. Rows are
drawn per class around the lecture's class means, written in row groups (bounded memory),
atomically (temporary name, then rename).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

FEATURES = ("T1w", "FA", "MD", "AD", "RD")
# class means (thalamus, corpus callosum, cortical WM) of T1w, FA, MD, AD, RD
MEANS = np.array(
    [[898, 0.22, 1.07, 1.33, 0.94], [1007, 0.68, 0.39, 0.72, 0.22], [867, 0.38, 0.58, 0.82, 0.45]]
)


def voxel_chunk(rng: np.random.Generator, start: int, rows: int, per_subject: int):
    """Columns of rows [start, start + rows): features float32, label int8, subject id."""
    labels = rng.integers(1, 4, size=rows, dtype=np.int8)
    noise = 1.0 + 0.1 * rng.standard_normal((rows, len(FEATURES)), dtype=np.float32)
    features = MEANS[labels - 1].astype(np.float32) * noise
    features[:, 1] = np.clip(features[:, 1], 0.0, 1.0)
    subjects = (np.arange(start, start + rows) // per_subject).astype(np.int32)
    return features, labels, subjects


def write_voxel_table(
    out: str | Path, rows: int, subjects: int = 100, seed: int = 0, chunk: int = 1_000_000
) -> Path:
    """Write `rows` voxels of `subjects` subjects to a Parquet or CSV file (by suffix)."""
    import pandas as pd

    from mrinet.io.atomic import atomic_file

    out = Path(out)
    per_subject = -(-rows // subjects)
    rng = np.random.default_rng(seed)
    with atomic_file(out) as tmp:
        writer = None
        for start in range(0, rows, chunk):
            x, y, s = voxel_chunk(rng, start, min(chunk, rows - start), per_subject)
            frame = pd.DataFrame(x, columns=list(FEATURES))
            frame["label"] = y
            frame["subject"] = pd.Categorical.from_codes(
                s, [f"sub-{i:04d}" for i in range(subjects)]
            )
            if out.suffix == ".parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            else:
                frame.to_csv(tmp, mode="a", header=start == 0, index=False, float_format="%.6g")
        if writer is not None:
            writer.close()
    return out


def main(argv: list[str] | None = None) -> Path:
    """Command line (see module docstring)."""
    p = argparse.ArgumentParser(description="Write a synthetic voxel table (Parquet or CSV).")
    p.add_argument("--out", required=True, help="output file: .parquet or .csv")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--subjects", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    path = write_voxel_table(args.out, args.rows, args.subjects, args.seed)
    size = path.stat().st_size / 2**20
    print(f"{args.rows} rows in {path} ({size:.0f} MiB, {time.perf_counter() - t0:.1f} s)")
    return path


if __name__ == "__main__":
    main()
