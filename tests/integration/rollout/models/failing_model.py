"""A green that raises on every request (models-from-code, no pickle)."""

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class FailingModel(PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("feature store lookup failed")


set_model(FailingModel())
