"""Watching a job: the real ``train`` logs to a real MLflow tracking server and writes TensorBoard
event files that TensorBoard's own reader reads back; a server that is down or hangs never fails
nor stalls the job."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from test_train_program import FAST, run_train

from tests import helpers
from tests.helpers import free_port, write_image_folder

pytestmark = pytest.mark.slow

REPO = helpers.REPO_ROOT
CLASSES = {"cat": 10, "dog": 10, "fox": 10}
HYPERPARAMETERS = {**FAST, "image_size": 32, "epochs": 2, "log_steps": 1}
HPARAMS_SESSION = "_hparams_/session_start_info"
# Credentials someone put in the tracking URI (the client refuses them; a job redacts them).
PASSWORD = "s3cr3t-Pa55"


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://watcher:{PASSWORD}@")


def assert_no_password(result, *roots) -> None:
    """Neither the job's log nor any file it wrote (event files included) holds the password."""
    assert PASSWORD not in result.stdout + result.stderr
    for root in roots:
        leaked = [p for p in root.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
        assert leaked == []


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with helpers.mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture
def job(opt_ml, tmp_path):
    data = write_image_folder(tmp_path / "data", CLASSES, size=(36, 36))
    for channel in ("train", "valid", "test"):
        opt_ml.channel(channel, data)
    opt_ml.hyperparameters(HYPERPARAMETERS)
    return opt_ml


@pytest.fixture
def watcher_environment(monkeypatch):
    """An MLflow watcher built in this process sets the client's defaults in ``os.environ``:
    they are undone after the test, so no later job in this worker inherits them."""
    from classifier.watching.mlflow_tracking import CLIENT_DEFAULTS

    for name in CLIENT_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def run_logged_job(mlflow_server: str, job):
    """``job`` with the Debugger on, logged to the server."""
    job.hyperparameters({**HYPERPARAMETERS, "debug": True})
    env = {
        # The test server asks for no credentials; the client sends them all the same.
        "MLFLOW_TRACKING_URI": with_credentials(mlflow_server),
        "MLFLOW_EXPERIMENT_NAME": "watching-test",
        "TRAINING_JOB_NAME": "watched-job-1",
        "CLASSIFIER_IMAGE_URI": "example.com/classifier:test",
        "CLASSIFIER_MLFLOW_REGISTER_MODEL": "watched-classifier",
    }
    result = run_train(job.root, REPO, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_a_watched_job_reads_back_from_mlflow_and_tensorboard_and_leaks_no_credential(mlflow_server, job):
    """One job (a training takes seconds), read back the three ways a user would."""
    result = run_logged_job(mlflow_server, job)
    run = assert_mlflow_run(mlflow_server)
    assert_no_credential(job, result, run)
    assert_tensorboard_events(job)


def assert_mlflow_run(mlflow_server: str):
    """The run has the job's params, a metric per epoch, its tags and artifacts, and a model version."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("watching-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "watched-job-1"
    params = run.data.params
    assert params["epochs"] == "2" and params["image_size"] == "32" and params["optimizer"] == "adam"
    assert {"learning_rate", "precision", "log_steps", "seed", "augmentation"} <= set(params)
    for metric in ("valid_accuracy", "train_loss", "learning_rate", "images_per_second"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == [1, 2], metric
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0 and run.data.metrics["epochs_run"] == 2
    tags = run.data.tags
    assert tags["sagemaker.training_job"] == "watched-job-1" and tags["sagemaker.instance_type"] == "local"
    assert (
        tags["sagemaker.instance_count"] == "1" and tags["sagemaker.image"] == "example.com/classifier:test"
    )
    files = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"model_config.json", "metrics.json", "report.html", "test_confusion_matrix.png"} <= files
    assert "valid_worst_mispredictions.png" in files and "model" in files
    versions = client.search_model_versions("name='watched-classifier'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    return run


def assert_no_credential(job, result, run) -> None:
    """The credentialed tracking URI reaches no log, file, event or MLflow record."""
    assert "watcher:***@127.0.0.1" in result.stdout + result.stderr
    assert_no_password(result, job.root)
    recorded = {**run.data.tags, **run.data.params}
    assert not [key for key, value in recorded.items() if PASSWORD in value]


def assert_tensorboard_events(job) -> None:
    """TensorBoard's reader finds the scalars per epoch, the hparams session and the figures."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(job.root / "output" / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/accuracy", "valid/loss", "valid/accuracy", "train/learning_rate"):
        assert [event.step for event in events.Scalars(tag)] == [1, 2], tag
    assert len(events.Scalars("train/batch_loss")) >= 4, "every step with log_steps=1"
    assert "final/test_accuracy" in scalars and "profiler/cpu_percent" in scalars
    assert {"test/confusion_matrix", "valid/worst_mispredictions"} <= set(events.Tags()["images"])
    session = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")[HPARAMS_SESSION]
    )
    hparams = session.session_start_info.hparams
    assert hparams["epochs"].number_value == 2 and hparams["optimizer"].string_value == "adam"
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    rules = events.Tensors("debugger/rules/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "loss_not_decreasing" in rules and "class_imbalance" in rules, rules


def test_a_transient_failure_stops_sending_but_the_run_still_ends_finished(
    mlflow_server, watcher_environment
):
    from mlflow import MlflowClient

    from classifier.watching.base import JobEnd, JobFacts
    from classifier.watching.mlflow_tracking import MlflowWatcher

    watcher_environment.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    watcher = MlflowWatcher(mlflow_server, {"MLFLOW_EXPERIMENT_NAME": "transient"})
    watcher.start(JobFacts("transient-job", None, "local", 1, "img", {"epochs": 2}))
    log_batch = watcher.client.log_batch

    def fail_once(*args, **kwargs):
        watcher.client.log_batch = log_batch
        raise ConnectionError("the network blinked")

    watcher.client.log_batch = fail_once
    watcher.epoch(1, {"valid_accuracy": 0.5})
    watcher.epoch(2, {"valid_accuracy": 0.6})
    watcher.finish(JobEnd(metrics={"best_valid_accuracy": 0.6}))
    missed = watcher.close()
    assert missed and "epoch 1 metrics, epoch 2 metrics, the final metrics" in missed[0]
    run = MlflowClient(mlflow_server).get_run(watcher.run_id)
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"


def _job_output(result) -> str:
    return result.stdout + result.stderr


def test_a_tracking_server_where_nothing_listens_is_warned_about_once_without_its_password(
    caplog, watcher_environment
):
    from classifier.watching.base import JobEnd, JobFacts, Watchers
    from classifier.watching.mlflow_tracking import MlflowWatcher

    watcher_environment.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    port = free_port()
    watchers = Watchers([MlflowWatcher(with_credentials(f"http://127.0.0.1:{port}"), {})])
    with caplog.at_level("WARNING"):
        watchers.start(JobFacts("unheard-job", None, "local", 1, "img", {"epochs": 2}))
        watchers.epoch(1, {"valid_accuracy": 0.5})
        watchers.epoch(2, {"valid_accuracy": 0.6})
        watchers.finish(JobEnd(metrics={"best_valid_accuracy": 0.6}))
        watchers.close()
    assert caplog.text.count(f"MLflow tracking server http://watcher:***@127.0.0.1:{port} failed") == 1
    assert PASSWORD not in caplog.text
    assert "MLflow did not record:" in caplog.text and "epoch 2 metrics" in caplog.text


class HangingServer:
    """Accepts connections and never answers."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.connections:
            connection.close()


def test_a_tracking_server_that_hangs_costs_one_bounded_wait_and_the_job_succeeds(job, repo_root):
    server = HangingServer()
    uri = with_credentials(f"http://127.0.0.1:{server.port}")
    try:
        started = time.monotonic()
        result = run_train(
            job.root, repo_root, {"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
        )
        elapsed = time.monotonic() - started
    finally:
        server.close()
    output = _job_output(result)
    assert result.returncode == 0, output[-5000:]
    assert output.count(f"MLflow tracking server http://watcher:***@127.0.0.1:{server.port} failed") == 1
    assert server.connections, "the job did reach the server"
    assert_no_password(result, job.root)
    assert "MLflow did not record:" in output and "epoch 2 metrics" in output
    assert (job.root / "model" / "model_config.json").exists()
    # One request of 2 s, one retry, backoff: the job itself takes well under a minute here.
    assert elapsed < 120, elapsed


@pytest.mark.parametrize("missing", [True, False], ids=["no config file", "config file"])
def test_the_tensorboard_folder_is_the_output_configs_local_path(opt_ml, missing, tmp_path):
    from classifier.training.environment import TrainingEnvironment

    if not missing:
        config = opt_ml.root / "input/config/tensorboardoutputconfig.json"
        config.write_text(f'{{"LocalPath": "{tmp_path / "tb"}"}}')
    env = TrainingEnvironment.from_environ({**os.environ, "SAGEMAKER_BASE_DIR": str(opt_ml.root)})
    expected = opt_ml.root / "output/tensorboard" if missing else tmp_path / "tb"
    assert env.tensorboard_dir == expected


def test_figures_that_fail_at_the_end_leave_the_job_and_its_metrics(opt_ml, monkeypatch):
    """The model is saved before the figures: a figure that fails is a warning, and the watchers
    still get the final metrics."""
    from types import SimpleNamespace

    from classifier.training import program
    from classifier.training.environment import TrainingEnvironment
    from classifier.training.hyperparameters import parse_hyperparameters
    from classifier.training.results import JobResult

    def broken(*args, **kwargs):
        raise RuntimeError("a DataLoader worker was killed")

    monkeypatch.setattr(program, "predict_dataset", broken)
    ended = []
    watchers = SimpleNamespace(finish=ended.append)
    env = TrainingEnvironment.from_environ({**os.environ, "SAGEMAKER_BASE_DIR": str(opt_ml.root)})
    result = JobResult(
        best_epoch=1, epochs_run=1, history=[{"epoch": 1, "valid_accuracy": 0.7, "valid_loss": 0.9}],
        test=None, train_images_per_second=10.0, skipped_files={}, hyperparameters={}, world_size=1,
        precision={},
    )  # fmt: skip
    job = program.Job(
        env, parse_hyperparameters({}), SimpleNamespace(device="cpu"), SimpleNamespace(received=False),
        SimpleNamespace(valid=[], class_names=["a", "b"]), SimpleNamespace(step=None, hook=None),
        None, watchers,
    )  # fmt: skip
    job.watch_end(None, None, result)
    (end,) = ended
    assert end.figures == {} and end.metrics["best_valid_accuracy"] == 0.7 and end.metrics["epochs_run"] == 1


def test_a_job_stopped_before_its_end_still_has_its_hparams_session(tmp_path):
    """A trial the tuner prunes (SIGTERM) never finishes: it is still a row of the HParams table."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from classifier.watching.base import JobFacts
    from classifier.watching.tensorboard import TensorBoardWatcher

    watcher = TensorBoardWatcher(tmp_path / "tb")
    hyperparameters = {"learning_rate": 0.01, "pretrained": False}
    watcher.start(JobFacts("pruned-trial", "hpo", "local", 1, "img", hyperparameters))
    watcher.epoch(1, {"valid_accuracy": 0.4, "train_loss": 1.2})
    assert watcher.close() == []
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content[HPARAMS_SESSION]).session_start_info
    assert session.hparams["learning_rate"].number_value == 0.01
    assert session.hparams["pretrained"].string_value == "false"
    assert [e.value for e in events.Scalars("final/valid_accuracy")] == [pytest.approx(0.4)]
