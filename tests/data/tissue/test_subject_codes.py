"""`SubjectCodes`: the cached cohort's subject per voxel without pandas (start-up, issue 26)."""

import numpy as np


def test_subject_codes_split_voxels_as_pandas_factorize_does():
    """The cached cohort's subjects (`SubjectCodes`, no pandas import at start-up) give the
    voxels the same subject split as the pandas Categorical they replace, unused names too."""
    import pandas as pd

    from mrinet.data.splits import SPLITS, split_units
    from mrinet.data.tissue.subjects import SubjectCodes

    rng = np.random.default_rng(0)
    names = np.array([f"sub-{i:03d}" for i in range(8)])
    codes = rng.integers(0, 8, 10_000)
    codes[codes == 3] = 5  # a subject without voxels

    def split_of_voxels(codes, names):
        units = split_units(list(names), [0.6, 0.2, 0.2], 7)
        index = {name: i for i, split in enumerate(SPLITS) for name in units[split]}
        return np.asarray([index[name] for name in names])[codes]

    expected = split_of_voxels(*pd.factorize(pd.Categorical.from_codes(codes, list(names))))
    subjects = SubjectCodes(codes, names)
    np.testing.assert_array_equal(split_of_voxels(*subjects.factorize()), expected)
    assert len(subjects[codes > 4]) == int((codes > 4).sum())
