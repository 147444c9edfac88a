"""A small MLflow xgboost model folder, as the train stage logs it (native format, metadata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ["distance", "passengers", "hour"]


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "distance": rng.uniform(0.5, 20, rows).round(3),
            "passengers": rng.integers(1, 5, rows).astype("float64"),
            "hour": rng.integers(0, 24, rows).astype("float64"),
        }
    )


def save_regressor(path: Path) -> object:
    """Train a tiny regressor on ``fare ~ distance`` and save it as an MLflow model folder."""
    import mlflow.xgboost
    import xgboost as xgb
    from mlflow.models import infer_signature

    x = frame(300)
    y = 2.5 + 1.8 * x["distance"] + 0.1 * x["passengers"]
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1)
    model.fit(x, y)
    mlflow.xgboost.save_model(
        model,
        str(path),
        signature=infer_signature(x.head(), model.predict(x.head())),
        model_format="ubj",
        metadata={"mlops": {"task": "regression", "target": "fare", "features": FEATURES}},
    )
    return model
