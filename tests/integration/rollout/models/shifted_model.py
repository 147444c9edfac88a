"""A green whose predictions are its XGBoost model's times 1.6 (models-from-code, no pickle)."""

import mlflow
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class ShiftedModel(PythonModel):
    def load_context(self, context):
        self.model = mlflow.xgboost.load_model(context.artifacts["xgboost"])

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input) * 1.6


set_model(ShiftedModel())
