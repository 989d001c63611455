"""The file MLflow logs as the file-data model ("models from code"): it names the model class.

MLflow runs this file when it loads the model; the model's own copy of rnnmodel, rnnflow and
tasks (logged as code paths) makes the imports below resolve anywhere.
"""

from mlflow.models import set_model

from rnnflow.forecaster import Forecaster

set_model(Forecaster())
