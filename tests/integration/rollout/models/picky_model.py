"""A green that answers like its XGBoost model but raises for trips with more than six
passengers (its fare table stops at six): rows the pre-traffic hook's reference sample never
holds, so it passes the smoke test and fails live (models-from-code, no pickle)."""

import mlflow
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class PickyModel(PythonModel):
    def load_context(self, context):
        self.model = mlflow.xgboost.load_model(context.artifacts["xgboost"])

    def predict(self, context, model_input, params=None):
        if (model_input["passenger_count"] > 6).any():
            raise ValueError("no fare table for more than 6 passengers")
        return self.model.predict(model_input)


set_model(PickyModel())
