"""ReconProtocol: folder tags, defaults, and refusals that name the setting and the fix."""

from __future__ import annotations

import pytest

from mrinet.errors import ConfigError
from mrinet.recon import ReconProtocol


def test_tags_name_method_mask_rate_and_reference_noise():
    assert ReconProtocol().tag == "pics_R4"
    assert ReconProtocol(
        method="sense", mask="equispaced", acceleration=8, center_fraction=0.04
    ).tag == ("sense_equispaced_R8")
    assert ReconProtocol(acceleration=2.5, center_fraction=0.1).tag == "pics_R2.5"
    assert ReconProtocol().reference_tag == "reference"
    assert ReconProtocol(reference_noise="matched").reference_tag == "reference_matched_R4"


def test_defaults_are_resolved_in_the_record():
    assert ReconProtocol().iterations == 30
    assert ReconProtocol(method="sense").iterations == 10
    assert ReconProtocol(method="zero_filled").iterations == 0
    assert ReconProtocol(iterations=20.0).iterations == 20
    assert ReconProtocol(lam=None).lam == "auto" and ReconProtocol().auto_lam
    assert ReconProtocol(lam="0.5").lam == 0.5 and not ReconProtocol(lam=0.5).auto_lam
    assert not ReconProtocol(method="sense").auto_lam  # lam only means something for pics


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"method": "magic"}, "method", "unknown method 'magic'"),
        ({"mask": "radial"}, "mask", "unknown mask 'radial'"),
        ({"wavelet": "sym8"}, "wavelet", "unknown wavelet 'sym8'"),
        ({"reference_noise": "loud"}, "reference_noise", "unknown reference_noise 'loud'"),
        ({"acceleration": 0.5}, "acceleration", "acceleration 0.5 < 1"),
        ({"acceleration": 8, "center_fraction": 0.2}, "center_fraction", "is impossible"),
        ({"lam": -1}, "lam", "lam -1 is neither a number >= 0 nor 'auto'"),
        ({"lam": "strong"}, "lam", "lam 'strong' is neither"),
        ({"iterations": 2.5}, "iterations", "iterations 2.5 is not a whole number"),
        ({"iterations": -1}, "iterations", "iterations -1 is not a whole number"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(settings, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        ReconProtocol(**settings)
    assert info.value.where == key and info.value.fix


def test_unknown_settings_are_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="not a reconstruction setting: 'acceleraton'") as info:
        ReconProtocol.from_settings({"acceleraton": 4})
    assert "center_fraction" in info.value.fix
    assert ReconProtocol.from_settings({"acceleration": 2, "center_fraction": 0.2}).tag == "pics_R2"


def test_protocol_is_a_value():
    assert ReconProtocol(acceleration=4) == ReconProtocol(acceleration=4.0, iterations=30)
    with pytest.raises(AttributeError):
        ReconProtocol().acceleration = 8
