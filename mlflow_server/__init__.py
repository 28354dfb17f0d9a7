"""The MLflow server as gradq runs it: MLflow's own app, its SQL tracking store storing a
batch's metric values in one statement (``mlflow server --app-name gradq``)."""
