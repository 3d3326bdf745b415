"""pCTR models: they learn a known click model, calibration brings the probabilities in line, and
the metrics match hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitrina.ads.ctr import CtrModel, calibration, ctr_metrics


def _logs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    p = 1 / (1 + np.exp(-(-3.0 + 1.2 * x[:, 0] - 0.8 * x[:, 1])))  # ~8% clicks; x[:, 2] is noise
    return x, (rng.random(n) < p).astype(int), p


def test_calibration_and_ece_by_hand() -> None:
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 0, 1, 1])
    cal = calibration(p, y, bins=2)
    assert cal["curve"]["count"] == [2, 2]
    assert cal["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)


@pytest.mark.parametrize("kind", ["logistic", "gbdt"])
def test_models_learn_the_click_model_and_are_calibrated(kind: str, tmp_path: Path) -> None:
    x, y, _ = _logs(8000, 0)
    xv, yv, _ = _logs(4000, 1)
    xt, yt, pt = _logs(8000, 2)
    model = CtrModel(kind, seed=0).fit(x, y, xv, yv)
    got = ctr_metrics(model.predict(xt), yt)
    best = ctr_metrics(pt, yt)  # the true probabilities: the ceiling
    assert got["auc"] > best["auc"] - 0.03
    assert got["ece"] < 0.02
    assert abs(got["mean_pctr"] - got["click_rate"]) < 0.01
    loaded = CtrModel.load(model.save(tmp_path / "ctr.pkl"))
    assert np.allclose(loaded.predict(xt[:50]), model.predict(xt[:50]))


def test_bad_training_data_is_refused() -> None:
    x, y, _ = _logs(100, 0)
    with pytest.raises(ValueError, match="both clicks and non-clicks"):
        CtrModel().fit(x, np.zeros(100, dtype=int), x, y)
    with pytest.raises(ValueError, match="NaN"):
        CtrModel().fit(np.full_like(x, np.nan), y, x, y)
    with pytest.raises(ValueError, match="unknown pCTR model"):
        CtrModel("deep-magic")
