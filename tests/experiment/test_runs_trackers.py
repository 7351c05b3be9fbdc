"""`logging.report_to` trackers other than WandB, through the real pipeline: TensorBoard event
files read back with TensorBoard's own reader, and MLflow against a local file store."""

from __future__ import annotations

import pytest
from test_runs import tiny_config, train_in_process

from grpolab.run.metrics import read as read_metrics


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_logged_metrics(tiny_gpt2, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tmp_path / "tb.yaml"
    config.write_text(tiny_config(tiny_gpt2, tmp_path / "runs", 1e-3, 0.01, report_to=["tensorboard"]))
    run_dir = train_in_process(config, "tb_run")
    event_files = list(run_dir.glob("runs/*/events.out.tfevents.*"))  # transformers' default logging_dir
    assert len(event_files) == 1
    acc = EventAccumulator(str(event_files[0].parent))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"train/reward", "train/kl", "train/loss"} <= set(scalars)
    logged = [r for r in read_metrics(run_dir) if "reward" in r]
    events = acc.Scalars("train/reward")
    assert [e.step for e in events] == [r["step"] for r in logged] == [1, 2, 3]
    assert [e.value for e in events] == pytest.approx([r["reward"] for r in logged])
    assert [e.value for e in acc.Scalars("train/kl")] == pytest.approx([r["kl"] for r in logged])


@pytest.mark.slow
def test_mlflow_file_store_gets_params_and_metrics(tiny_gpt2, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = f"file:{tmp_path / 'mlruns'}"
    env = {"MLFLOW_TRACKING_URI": store, "MLFLOW_EXPERIMENT_NAME": "grpolab-tests", "MLFLOW_ALLOW_FILE_STORE": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the config's env: sets them too; monkeypatch restores them afterwards
    config = tmp_path / "mlflow.yaml"
    config.write_text(tiny_config(tiny_gpt2, tmp_path / "runs", 1e-3, 0.01, report_to=["mlflow"], env=env))
    run_dir = train_in_process(config, "mlflow_run")
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("grpolab-tests")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    assert float(run.data.params["learning_rate"]) == 1e-3 and float(run.data.params["beta"]) == 0.01
    history = client.get_metric_history(run.info.run_id, "reward")
    logged = [r for r in read_metrics(run_dir) if "reward" in r]
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([r["reward"] for r in logged])
    assert "kl" in run.data.metrics
