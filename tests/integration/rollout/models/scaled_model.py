"""A green whose predictions are its XGBoost model's times ``factor`` from the model config
(models-from-code, no pickle): 1.03 is a good green with tiny differences."""

import mlflow
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class ScaledModel(PythonModel):
    def load_context(self, context):
        self.model = mlflow.xgboost.load_model(context.artifacts["xgboost"])
        self.factor = float(context.model_config["factor"])

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input) * self.factor


set_model(ScaledModel())
