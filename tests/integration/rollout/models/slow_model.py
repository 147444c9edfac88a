"""A green that answers like its XGBoost model but 600 ms late (models-from-code, no pickle)."""

import time

import mlflow
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class SlowModel(PythonModel):
    def load_context(self, context):
        self.model = mlflow.xgboost.load_model(context.artifacts["xgboost"])

    def predict(self, context, model_input, params=None):
        time.sleep(0.6)
        return self.model.predict(model_input)


set_model(SlowModel())
