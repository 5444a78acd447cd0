"""Tensor fit: equals DIPY on its real data, recovers noise-free tensors exactly."""

import numpy as np
import pytest
import torch

from mrinet.mri.dti import design_matrix, fit_tensor


def _scheme(rng, n_dirs=30, bval=1000.0, n_b0=2):
    dirs = rng.standard_normal((n_dirs, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    bvals = np.concatenate([np.zeros(n_b0), np.full(n_dirs, bval)])
    bvecs = np.concatenate([np.zeros((n_b0, 3)), dirs])
    return bvals, bvecs


def _random_tensors(rng, n):
    """Eigenvalues (n, 3) descending in um^2/ms and random rotations (n, 3, 3)."""
    evals = np.sort(rng.uniform(0.1, 2.5, size=(n, 3)), axis=1)[:, ::-1]
    q, _ = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    return evals, q


def _signal(evals, evecs, bvals, bvecs, s0):
    tensors = np.einsum("nij,nj,nkj->nik", evecs, evals, evecs)
    adc = np.einsum("gi,nij,gj->ng", bvecs, tensors, bvecs)
    return s0[:, None] * np.exp(-bvals[None, :] / 1000.0 * adc)


@pytest.mark.parametrize("method", ["ols", "wls"])
def test_noise_free_signal_recovers_tensors(method):
    rng = np.random.default_rng(0)
    bvals, bvecs = _scheme(rng)
    evals, evecs = _random_tensors(rng, 500)
    s0 = rng.uniform(200, 2000, size=500)
    fit = fit_tensor(_signal(evals, evecs, bvals, bvecs, s0), bvals, bvecs, method=method)
    np.testing.assert_allclose(fit.evals.numpy(), evals, rtol=1e-9)
    np.testing.assert_allclose(fit.s0.numpy(), s0, rtol=1e-9)
    # principal direction equal up to sign
    dots = np.abs(np.einsum("ni,ni->n", fit.evecs[..., 0].numpy(), evecs[..., 0]))
    np.testing.assert_allclose(dots, 1.0, atol=1e-8)
    np.testing.assert_allclose(fit.md.numpy(), evals.mean(1), rtol=1e-9)
    np.testing.assert_allclose(fit.ad.numpy(), evals[:, 0], rtol=1e-9)
    np.testing.assert_allclose(fit.rd.numpy(), evals[:, 1:].mean(1), rtol=1e-9)


def test_fa_of_known_tensor():
    rng = np.random.default_rng(1)
    bvals, bvecs = _scheme(rng)
    evals = np.array([[1.7, 0.3, 0.3]])
    sig = _signal(evals, np.eye(3)[None], bvals, bvecs, np.array([1000.0]))
    fa = fit_tensor(sig, bvals, bvecs).fa.item()
    expected = np.sqrt(0.5 * (2 * 1.4**2) / (1.7**2 + 2 * 0.3**2))
    assert fa == pytest.approx(expected, abs=1e-10)


def test_batched_shape_mask_and_fsl_bvec_layout():
    rng = np.random.default_rng(2)
    bvals, bvecs = _scheme(rng)
    evals, evecs = _random_tensors(rng, 4 * 5 * 6)
    dwi = _signal(evals, evecs, bvals, bvecs, np.full(120, 500.0)).reshape(4, 5, 6, -1)
    mask = rng.random((4, 5, 6)) > 0.3
    fit = fit_tensor(torch.from_numpy(dwi), bvals, bvecs.T, mask=mask)
    full = fit_tensor(dwi, bvals, bvecs)
    assert fit.fa.shape == (4, 5, 6) and fit.evecs.shape == (4, 5, 6, 3, 3)
    assert fit.fa.dtype == torch.float64
    np.testing.assert_allclose(fit.md[mask].numpy(), full.md[mask].numpy(), rtol=1e-12)
    assert torch.all(fit.md[~torch.from_numpy(mask)] == 0)


def test_design_matrix_is_in_ms_per_um2():
    x = design_matrix([0, 1000], [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(x[1], [-1, 0, 0, 0, 0, 0, 1])


def test_invalid_inputs_raise():
    rng = np.random.default_rng(3)
    bvals, bvecs = _scheme(rng)
    with pytest.raises(ValueError, match="method"):
        fit_tensor(np.ones((2, bvals.size)), bvals, bvecs, method="nlls")
    with pytest.raises(ValueError, match="volumes"):
        fit_tensor(np.ones((2, bvals.size + 1)), bvals, bvecs)
    with pytest.raises(ValueError, match="unit"):
        fit_tensor(np.ones((2, bvals.size)), bvals, bvecs * 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    rng = np.random.default_rng(4)
    bvals, bvecs = _scheme(rng)
    evals, evecs = _random_tensors(rng, 1000)
    sig = _signal(evals, evecs, bvals, bvecs, np.full(1000, 800.0))
    sig *= rng.normal(1.0, 0.02, size=sig.shape)
    gpu = fit_tensor(torch.from_numpy(sig).cuda(), bvals, bvecs)
    cpu = fit_tensor(sig, bvals, bvecs)
    assert gpu.fa.device.type == "cuda"
    np.testing.assert_allclose(gpu.fa.cpu().numpy(), cpu.fa.numpy(), atol=1e-10)


def _dipy_case(name):
    import nibabel as nib

    data_mod = pytest.importorskip("dipy.data")
    pytest.importorskip("dipy.reconst.dti")
    from dipy.segment.mask import median_otsu

    fimg, fbval, fbvec = data_mod.get_fnames(name=name)
    data = np.asarray(nib.load(fimg).dataobj, dtype=np.float64)
    bvals, bvecs = np.loadtxt(fbval), np.loadtxt(fbvec)
    if bvecs.shape[0] == 3 and bvecs.shape[1] != 3:
        bvecs = bvecs.T
    keep = bvals <= 1600
    data, bvals, bvecs = data[..., keep], bvals[keep], bvecs[keep]
    _, mask = median_otsu(data, vol_idx=np.flatnonzero(bvals <= 50))
    return data, bvals, bvecs, mask


@pytest.mark.parametrize("name", ["small_64D", "small_101D"])
@pytest.mark.parametrize("method", ["OLS", "WLS"])
def test_equals_dipy_on_its_real_data(name, method):
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    data, bvals, bvecs, mask = _dipy_case(name)
    assert mask.sum() > 300
    ref = TensorModel(gradient_table(bvals, bvecs=bvecs), fit_method=method).fit(data, mask=mask)
    fit = fit_tensor(data, bvals, bvecs, method=method.lower(), mask=mask)
    np.testing.assert_allclose(fit.fa.numpy()[mask], ref.fa[mask], rtol=0, atol=1e-8)
    for key in ("md", "ad", "rd"):  # DIPY: mm^2/s; ours: um^2/ms
        ours = getattr(fit, key).numpy()[mask]
        np.testing.assert_allclose(ours, getattr(ref, key)[mask] * 1000.0, rtol=0, atol=1e-8)
