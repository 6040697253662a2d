from pathlib import Path

import pytest

from classifier.training.environment import ContractError, TrainingEnvironment


def test_reads_contract_files_from_base_dir(opt_ml, small_folder):
    opt_ml.hyperparameters({"epochs": 2}).resource_config(["algo-2", "algo-1"], "algo-2")
    opt_ml.channel("train", small_folder)
    opt_ml.channel("validation", small_folder)
    env = TrainingEnvironment.from_environ()
    assert env.base_dir == opt_ml.root
    assert env.hyperparameters == {"epochs": "2"}
    assert env.input_data_config["train"]["TrainingInputMode"] == "File"
    assert env.hosts == ["algo-1", "algo-2"]
    assert (env.host_rank, env.master_addr) == (1, "algo-1")
    assert env.train_channel() == opt_ml.root / "input/data/train"
    assert env.valid_channel().name == "validation"
    assert env.test_channel() is None
    assert env.model_dir == opt_ml.root / "model"
    assert env.failure_file == opt_ml.root / "output/failure"
    assert env.checkpoint_dir == opt_ml.root / "checkpoints"


def test_missing_channels_are_named(opt_ml):
    env = TrainingEnvironment.from_environ()
    with pytest.raises(ContractError, match="no 'train' channel"):
        env.train_channel()
    with pytest.raises(ContractError, match="'valid' or 'validation'"):
        env.valid_channel()


def test_malformed_json_names_the_file(opt_ml):
    (opt_ml.root / "input/config/hyperparameters.json").write_text("{not json")
    with pytest.raises(ContractError, match="hyperparameters.json is not valid JSON"):
        TrainingEnvironment.from_environ()


def test_master_and_processes_overrides(opt_ml, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    monkeypatch.setenv("SM_PROCESSES_PER_HOST", "2")
    env = TrainingEnvironment.from_environ()
    assert (env.master_addr, env.master_port, env.processes_per_host(0)) == ("127.0.0.1", 29999, 2)
    monkeypatch.setenv("SM_PROCESSES_PER_HOST", "zero")
    with pytest.raises(ContractError, match="SM_PROCESSES_PER_HOST='zero'"):
        TrainingEnvironment.from_environ().processes_per_host(0)


def test_one_process_per_gpu_by_default(opt_ml):
    env = TrainingEnvironment.from_environ()
    assert env.processes_per_host(0) == 1
    assert env.processes_per_host(8) == 8


def test_pipe_input_mode_is_refused_with_the_channel_named(opt_ml, small_folder):
    opt_ml.channel("train", small_folder)
    opt_ml.channel("valid", small_folder)
    config = opt_ml.root / "input/config/inputdataconfig.json"
    config.write_text(config.read_text().replace('"File"', '"Pipe"', 1))
    env = TrainingEnvironment.from_environ()
    with pytest.raises(ContractError, match="channel 'train' uses TrainingInputMode=Pipe"):
        env.check_input_modes()


def test_fastfile_and_file_input_modes_are_accepted(opt_ml, small_folder):
    opt_ml.channel("train", small_folder)
    opt_ml.channel("valid", small_folder)
    config = opt_ml.root / "input/config/inputdataconfig.json"
    config.write_text(config.read_text().replace('"File"', '"FastFile"', 1))
    TrainingEnvironment.from_environ().check_input_modes()


def test_checkpoint_local_path_from_checkpointconfig(opt_ml, tmp_path):
    config = opt_ml.root / "input/config/checkpointconfig.json"
    config.write_text('{"LocalPath": "/opt/ml/spot-checkpoints/", "S3Uri": "s3://bucket/ckpt"}')
    assert TrainingEnvironment.from_environ().checkpoint_dir == opt_ml.root / "spot-checkpoints"
    config.write_text(f'{{"LocalPath": "{tmp_path / "elsewhere"}", "S3Uri": "s3://bucket/ckpt"}}')
    assert TrainingEnvironment.from_environ().checkpoint_dir == tmp_path / "elsewhere"
    config.write_text('{"S3Uri": "s3://bucket/ckpt"}')
    assert TrainingEnvironment.from_environ().checkpoint_dir == opt_ml.root / "checkpoints"


def test_tuning_trials_checkpoint_under_their_own_job_name(opt_ml, monkeypatch):
    monkeypatch.setenv("TRAINING_JOB_NAME", "tune-0005-a1b2")
    assert TrainingEnvironment.from_environ().checkpoint_dir == opt_ml.root / "checkpoints"
    opt_ml.hyperparameters({"epochs": 2, "_tuning_objective_metric": "valid_accuracy"})
    env = TrainingEnvironment.from_environ()
    assert env.checkpoint_dir == opt_ml.root / "checkpoints" / "tune-0005-a1b2"


def test_the_config_files_are_read_once_when_the_environment_is_built(opt_ml):
    config = opt_ml.root / "input/config/checkpointconfig.json"
    config.write_text('{"LocalPath": "/opt/ml/spot-checkpoints/", "S3Uri": "s3://bucket/ckpt"}')
    (opt_ml.root / "input/config/tensorboardoutputconfig.json").write_text('{"LocalPath": "/opt/ml/tb"}')
    env = TrainingEnvironment.from_environ()
    config.write_text("not JSON any more")
    (opt_ml.root / "input/config/tensorboardoutputconfig.json").unlink()
    assert env.checkpoint_dir == opt_ml.root / "spot-checkpoints"
    assert env.tensorboard_dir == opt_ml.root / "tb"


def test_a_malformed_config_file_is_named_when_the_environment_is_built(opt_ml):
    (opt_ml.root / "input/config/tensorboardoutputconfig.json").write_text("{")
    with pytest.raises(ContractError, match="tensorboardoutputconfig.json is not valid JSON"):
        TrainingEnvironment.from_environ()


@pytest.mark.parametrize("value", ["", "   "])
def test_training_and_serving_find_the_tree_by_one_rule(monkeypatch, value):
    from classifier.serving.config import ServingSettings

    monkeypatch.setenv("SAGEMAKER_BASE_DIR", value)
    assert TrainingEnvironment.from_environ().base_dir == Path("/opt/ml")
    assert ServingSettings.from_env().model_dir == Path("/opt/ml/model")
