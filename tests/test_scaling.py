"""The fitted data state pieces: target, label and descriptor scaling."""
import json

import numpy as np
import pytest

from skcrystal.estimators.scaling import DescriptorScaler, LabelEncoder, TargetScaler


def test_target_scaler_round_trip_and_shapes():
    y = np.array([1.0, 2.0, 3.0, 6.0])
    s = TargetScaler().fit(y)
    assert s.mean_.tolist() == [3.0] and s.scale_[0] == pytest.approx(np.std(y))
    z = s.transform(y)
    assert z.shape == (4, 1) and z.dtype == np.float32
    np.testing.assert_allclose(z[:, 0], (y - 3.0) / np.std(y), rtol=1e-6)
    np.testing.assert_allclose(s.inverse_transform(z), y, rtol=1e-6)
    assert s.inverse_transform(z).shape == (4,)
    Y = np.stack([y, 2 * y, np.ones(4)], axis=1)  # a constant column keeps scale 1
    with pytest.warns(UserWarning, match=r"y is constant in target column\(s\) \[2\] "
                                         r"\(every value 1\): nothing to learn"):
        s2 = TargetScaler().fit(Y)
    assert s2.scale_[2] == 1.0 and s2.inverse_transform(s2.transform(Y)).shape == (4, 3)
    with pytest.raises(ValueError, match="2 targets but the model was fitted with 3"):
        s2.transform(Y[:, :2])


def test_constant_target_warns_once_per_fit():
    with pytest.warns(UserWarning, match=r"y is constant \(every value 3.5\)"):
        TargetScaler().fit(np.full(5, 3.5))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TargetScaler().fit(np.array([3.5]))  # one row: no spread to speak of
        TargetScaler().fit(np.array([3.5, 3.5 + 1e-9]))


def test_label_encoder_any_labels_and_unseen():
    enc = LabelEncoder().fit(np.array(["metal", "insulator", "metal"]))
    assert enc.classes_.tolist() == ["insulator", "metal"]
    assert enc.transform(np.array(["metal", "insulator"])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="unseen in the first fit: \\['semimetal'\\]"):
        enc.transform(np.array(["metal", "semimetal"]))
    with pytest.raises(ValueError, match="single class"):
        LabelEncoder().fit(np.array([1, 1, 1]))


def test_descriptor_scaler_checks_names_and_values():
    D = np.array([[1.0, 10.0], [3.0, 10.0]])
    s = DescriptorScaler().fit(D, ["vpa", "a"])
    np.testing.assert_allclose(s.transform(D, ["vpa", "a"]), [[-1, 0], [1, 0]])
    with pytest.raises(ValueError, match="column 0 of X is 'a' but .* 'vpa'"):
        s.transform(D[:, ::-1], ["a", "vpa"])
    with pytest.raises(ValueError, match="1 descriptor columns but .* 2"):
        s.transform(D[:, :1], ["vpa"])
    bad = D.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf in rows \[1\] \(columns \['vpa'\]\)"):
        s.transform(bad, ["vpa", "a"])


@pytest.mark.parametrize("piece, fit_args", [
    (TargetScaler, (np.array([[1.0, 2.0], [3.0, 5.0]]),)),
    (LabelEncoder, (np.array([2, 0, 2]),)),
    (DescriptorScaler, (np.array([[1.0], [2.0]]), ["x"])),
])
def test_state_is_plain_json(piece, fit_args):
    fitted = piece().fit(*fit_args)
    state = json.loads(json.dumps(fitted.get_state()))
    back = piece.from_state(state)
    for k, v in fitted.get_state().items():
        np.testing.assert_array_equal(np.asarray(getattr(back, k)), np.asarray(v))
