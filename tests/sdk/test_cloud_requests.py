"""The cloud path, offline: each CLI step against moto (server mode on 127.0.0.1).

Assertions are on the parameters the client hands botocore (recorded before botocore
validates them against the SageMaker service model), plus what moto then stores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-image-classifier:v1"
BUCKET = "classifier-data"
EVALUATOR = "111122223333.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rule-evaluator:latest"
# What the rules read, with --tensor-save-interval 50: losses, labels and predictions every
# step; reductions of weights, biases, gradients and ReLU inputs at step 0 and every 50 steps.
REDUCED = {"train.save_interval": "50", "train.save_steps": "0", "eval.end_step": "0"}
COLLECTIONS_AT_INTERVAL_50 = [
    {"CollectionName": "losses", "CollectionParameters": {"save_interval": "1"}},
    {
        "CollectionName": "labels",
        "CollectionParameters": {"save_interval": "1", "include_regex": "^labels$"},
    },
    {
        "CollectionName": "predictions",
        "CollectionParameters": {"save_interval": "1", "include_regex": "^predictions$"},
    },
    {
        "CollectionName": "weights",
        "CollectionParameters": {**REDUCED, "reductions": "std", "save_shape": "true"},
    },
    {
        "CollectionName": "biases",
        "CollectionParameters": {**REDUCED, "reductions": "mean", "save_shape": "false"},
    },
    {
        "CollectionName": "gradients",
        "CollectionParameters": {
            **REDUCED, "reductions": "std", "save_shape": "false", "abs_reductions": "mean",
        },
    },
    {
        "CollectionName": "relu_input",
        "CollectionParameters": {**REDUCED, "reductions": "std", "save_shape": "false"},
    },
]  # fmt: skip
# A line as ./train prints it, and what each metric definition must read from it.
METRIC_LINE = (
    "epoch=3 train_loss=0.81 train_accuracy=0.7 valid_loss=0.93 valid_accuracy=0.78 "
    "test_loss=1e-3 test_accuracy=nan"
)
METRICS_IN_LINE = {
    "train_loss": "0.81", "train_accuracy": "0.7", "valid_loss": "0.93",
    "valid_accuracy": "0.78", "test_loss": "1e-3", "test_accuracy": "nan",
}  # fmt: skip


@pytest.fixture
def data_in_s3(aws, tmp_path, cli, tiny_image_folder) -> str:
    aws.boto3("s3").create_bucket(Bucket=BUCKET)
    assert cli("upload-data", tiny_image_folder(tmp_path / "pets"), f"s3://{BUCKET}/pets") == 0
    return f"s3://{BUCKET}/pets"


def _metrics_read(definitions: list[dict]) -> dict[str, str]:
    return {d["Name"]: re.search(d["Regex"], METRIC_LINE).group(1) for d in definitions}


def _channels(request: dict) -> dict[str, str]:
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}


def test_train_sends_image_hyperparameters_channels_debugger_profiler_spot(aws, data_in_s3, cli):
    code = cli(
        "train", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3,
        "--hp", "epochs=3", "--hp", "amp=true", "--hp", "learning_rate=0.01",
        "--instance-type", "ml.g4dn.xlarge", "--instance-count", "2",
        "--spot", "--max-run", "3600",
        "--debugger-rules", "loss_not_decreasing,overfit", "--rule-param", "overfit.patience=2",
        "--rule-evaluator-image", EVALUATOR,
        "--tensor-save-interval", "50", "--profiling-interval-ms", "1000",
        "--env", "SAGEMAKER_PROGRAM_LOG=1",
    )  # fmt: skip
    assert code == 0
    request = aws.recorded.one("CreateTrainingJob")
    job = request["TrainingJobName"]

    assert request["AlgorithmSpecification"]["TrainingImage"] == aws.pinned(IMAGE)
    assert _metrics_read(request["AlgorithmSpecification"]["MetricDefinitions"]) == METRICS_IN_LINE
    assert request["HyperParameters"] == {"epochs": "3", "amp": "true", "learning_rate": "0.01"}
    assert request["RoleArn"] == aws.role_arn
    assert _channels(request) == {
        "train": f"{data_in_s3}/train/",
        "valid": f"{data_in_s3}/valid/",
        "test": f"{data_in_s3}/test/",
    }
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert request["Environment"] == {"SAGEMAKER_PROGRAM_LOG": "1", "CLASSIFIER_IMAGE_URI": aws.pinned(IMAGE)}

    # Spot: managed spot, a wait limit above the run limit, checkpoints synced to S3.
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    output = request["OutputDataConfig"]["S3OutputPath"]
    assert request["CheckpointConfig"] == {
        "S3Uri": f"{output}/{job}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }

    # Debugger: the same collections the image's rules read, under the job's prefix.
    hook = request["DebugHookConfig"]
    assert hook["S3OutputPath"] == f"{output}/{job}/debug-output"
    assert hook["LocalPath"] == "/opt/ml/output/tensors"
    assert hook["CollectionConfigurations"] == COLLECTIONS_AT_INTERVAL_50
    rules = {r["RuleConfigurationName"]: r for r in request["DebugRuleConfigurations"]}
    assert set(rules) == {"loss_not_decreasing", "overfit"}
    # AWS's custom-rule evaluator runs our rule file; our training image has no evaluator.
    assert {r["RuleEvaluatorImage"] for r in rules.values()} == {EVALUATOR}
    assert rules["overfit"]["RuleParameters"]["rule_to_invoke"] == "Overfit"
    assert rules["overfit"]["RuleParameters"]["patience"] == "2"
    assert rules["loss_not_decreasing"]["RuleParameters"]["rule_to_invoke"] == "LossNotDecreasing"
    source = rules["overfit"]["RuleParameters"]["source_s3_uri"]
    bucket, key = source[5:].split("/", 1)
    uploaded = aws.boto3("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    rules_file = (
        Path(__file__).resolve().parents[2] / "container/classifier/debugging/rules/debugger_rules.py"
    )
    assert uploaded == rules_file.read_bytes()
    assert "class Overfit" in uploaded.decode()

    assert request["ProfilerConfig"]["ProfilingIntervalInMilliseconds"] == 1000
    assert request["ProfilerConfig"]["S3OutputPath"] == f"{output}/{job}/profiler-output"
    assert "DisableProfiler" not in request["ProfilerConfig"]
    assert json.loads(request["ProfilerConfig"]["ProfilingParameters"]["DataloaderProfilingConfig"])

    stored = aws.boto3("sagemaker").describe_training_job(TrainingJobName=job)
    assert stored["AlgorithmSpecification"]["TrainingImage"] == aws.pinned(IMAGE)
    assert stored["HyperParameters"] == {"epochs": "3", "amp": "true", "learning_rate": "0.01"}


def test_train_hyperparameters_file_from_best_and_debugger_off(aws, data_in_s3, tmp_path, cli):
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"hyperparameters": {"batch_size": 64, "pretrained": True}}))
    code = cli(
        "train", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3,
        "--hyperparameters-file", best, "--hp", "epochs=2",
        "--no-debugger-hook", "--no-profiler",
    )  # fmt: skip
    assert code == 0
    request = aws.recorded.one("CreateTrainingJob")
    assert request["HyperParameters"] == {"batch_size": "64", "pretrained": "true", "epochs": "2"}
    assert "DebugHookConfig" not in request and "DebugRuleConfigurations" not in request
    assert request["ProfilerConfig"] == {"DisableProfiler": True}
    assert "CheckpointConfig" not in request and "EnableManagedSpotTraining" not in request
    assert request["ResourceConfig"]["InstanceCount"] == 1


def test_tune_sends_ranges_objective_metric_definitions_warm_start(aws, data_in_s3, cli):
    code = cli(
        "tune", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3,
        "--hp", "model=resnet50", "--hp", "pretrained=true",
        "--range", "epochs=integer:3:6", "--range", "momentum=continuous:0.8:0.99",
        "--max-jobs", "8", "--max-parallel-jobs", "2",
        "--warm-start-from", "earlier-hpo-job", "--warm-start-type", "transfer",
        "--spot", "--instance-type", "ml.g4dn.xlarge",
    )  # fmt: skip
    assert code == 0
    request = aws.recorded.one("CreateHyperParameterTuningJob")
    assert len(request["HyperParameterTuningJobName"]) <= 32
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "valid_accuracy",
    }
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["Strategy"] == "Bayesian"
    ranges = config["ParameterRanges"]
    continuous = {r["Name"]: r for r in ranges["ContinuousParameterRanges"]}
    assert continuous["learning_rate"] == {
        "Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1",
        "ScalingType": "Logarithmic",
    }  # fmt: skip
    assert continuous["momentum"]["MinValue"] == "0.8"
    integer = {r["Name"]: r for r in ranges["IntegerParameterRanges"]}
    assert integer["epochs"]["MinValue"] == "3" and integer["epochs"]["MaxValue"] == "6"
    categorical = {r["Name"]: r["Values"] for r in ranges["CategoricalParameterRanges"]}
    assert categorical == {
        "batch_size": ["16", "32", "64", "128"],
        "optimizer": ["sgd", "adam", "adamw"],
        "augmentation": ["light", "standard", "strong"],
    }

    definition = request["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["TrainingImage"] == aws.pinned(IMAGE)
    assert _metrics_read(definition["AlgorithmSpecification"]["MetricDefinitions"]) == METRICS_IN_LINE
    assert definition["StaticHyperParameters"] == {"model": "resnet50", "pretrained": "true"}
    assert _channels(definition) == {
        "train": f"{data_in_s3}/train/",
        "valid": f"{data_in_s3}/valid/",
        "test": f"{data_in_s3}/test/",
    }
    assert definition["RoleArn"] == aws.role_arn
    assert definition["EnableManagedSpotTraining"] is True
    # One CheckpointConfig serves every training job of the tuning job and SageMaker restores
    # its whole prefix into each: the prefix is this tuning job's own, never another's (the
    # image keeps each trial under <prefix>/<training job name>/).
    tuning_job = request["HyperParameterTuningJobName"]
    assert definition["CheckpointConfig"] == {
        "S3Uri": f"s3://sagemaker-us-east-1-123456789012/img-clf-hpo/{tuning_job}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert definition["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "earlier-hpo-job"}],
        "WarmStartType": "TransferLearning",
    }
    stored = aws.boto3("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=request["HyperParameterTuningJobName"]
    )
    assert stored["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] == (
        "valid_accuracy"
    )


def test_tune_refuses_a_hyperparameter_both_fixed_and_tuned(aws, data_in_s3, capsys, cli):
    code = cli("tune", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3, "--hp", "epochs=3")
    assert code == 2
    assert "['epochs'] are both fixed" in capsys.readouterr().err
    assert "CreateHyperParameterTuningJob" not in aws.recorded.operations()


def test_deploy_then_delete_creates_and_removes_model_config_endpoint(aws, capsys, cli):
    model_data = f"s3://{BUCKET}/jobs/job-1/output/model.tar.gz"
    code = cli(
        "deploy", "--image", IMAGE, "--role", aws.role_arn, "--model-data", model_data,
        "--endpoint-name", "digits", "--instance-type", "ml.c5.xlarge", "--instance-count", "2",
        "--workers", "2", "--env", "SAGEMAKER_MAX_PAYLOAD_IN_MB=2",
    )  # fmt: skip
    assert code == 0
    deployed = json.loads(capsys.readouterr().out)
    model = aws.recorded.one("CreateModel")
    assert model["ModelName"] == deployed["model"]
    assert model["ExecutionRoleArn"] == aws.role_arn
    assert model["PrimaryContainer"] == {
        "Image": aws.pinned(IMAGE),
        "ModelDataUrl": model_data,
        "Environment": {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "2", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
    }
    config = aws.recorded.one("CreateEndpointConfig")
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": deployed["model"],
            "InitialInstanceCount": 2,
            "InstanceType": "ml.c5.xlarge",
        }
    ]
    endpoint = aws.recorded.one("CreateEndpoint")
    assert endpoint == {
        "EndpointName": "digits",
        "EndpointConfigName": config["EndpointConfigName"],
    }
    assert deployed["status"] == "InService"

    assert cli("delete", "digits") == 0
    assert aws.recorded.one("DeleteEndpoint") == {"EndpointName": "digits"}
    assert aws.recorded.one("DeleteEndpointConfig") == {"EndpointConfigName": config["EndpointConfigName"]}
    assert aws.recorded.one("DeleteModel") == {"ModelName": deployed["model"]}
    sagemaker = aws.boto3("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_models()["Models"] == []


def test_deploy_rejects_a_local_archive_without_local(aws, capsys, cli):
    code = cli(
        "deploy", "--image", IMAGE, "--role", aws.role_arn, "--model-data", "model.tar.gz",
        "--endpoint-name", "digits",
    )  # fmt: skip
    assert code == 2
    assert "needs --local" in capsys.readouterr().err
    assert "CreateModel" not in aws.recorded.operations()


def test_upload_data_skips_unchanged_files_and_reports_channels(
    aws, tmp_path, capsys, cli, tiny_image_folder
):
    aws.boto3("s3").create_bucket(Bucket=BUCKET)
    source = tiny_image_folder(tmp_path / "pets", per_class=2)
    assert cli("upload-data", source, f"s3://{BUCKET}/pets/") == 0
    first = capsys.readouterr()
    assert "uploaded 12 files" in first.err
    assert json.loads(first.out)["channels"] == {
        "train": f"s3://{BUCKET}/pets/train/",
        "valid": f"s3://{BUCKET}/pets/valid/",
        "test": f"s3://{BUCKET}/pets/test/",
    }
    changed = source / "train" / "cat" / "0.png"
    changed.write_bytes(changed.read_bytes() + b"\0")
    assert cli("upload-data", source, f"s3://{BUCKET}/pets") == 0
    assert "uploaded 1 files" in capsys.readouterr().err
    keys = aws.boto3("s3").list_objects_v2(Bucket=BUCKET, Prefix="pets/")["KeyCount"]
    assert keys == 12


def test_upload_data_unpacks_an_archive_like_dog_images(aws, tmp_path, capsys, cli, tiny_image_folder):
    import shutil

    aws.boto3("s3").create_bucket(Bucket=BUCKET)
    tree = tiny_image_folder(tmp_path / "build" / "dogImages", per_class=1)
    archive = shutil.make_archive(str(tmp_path / "dogImages"), "zip", tree.parent)
    assert cli("upload-data", archive, f"s3://{BUCKET}/dogs") == 0
    assert json.loads(capsys.readouterr().out)["channels"]["valid"] == f"s3://{BUCKET}/dogs/valid/"
    listed = aws.boto3("s3").list_objects_v2(Bucket=BUCKET, Prefix="dogs/valid/")
    assert {o["Key"] for o in listed["Contents"]} == {
        "dogs/valid/cat/0.png",
        "dogs/valid/dog/0.png",
    }


ALL_KINDS = {"ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges"}


@pytest.mark.parametrize(
    "strategy, early_stopping, kinds",
    [
        ("Bayesian", "Auto", ALL_KINDS),
        ("Random", "Auto", ALL_KINDS),
        ("Hyperband", "Off", {"ContinuousParameterRanges", "CategoricalParameterRanges"}),
        ("Grid", "Auto", {"CategoricalParameterRanges"}),
    ],
)
def test_each_strategy_with_its_defaults_sends_a_request_it_accepts(
    aws, data_in_s3, cli, strategy, early_stopping, kinds
):
    code = cli("tune", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3, "--strategy", strategy)
    assert code == 0
    request = aws.recorded.one("CreateHyperParameterTuningJob")
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == strategy
    assert config["TrainingJobEarlyStoppingType"] == early_stopping
    ranges = config["ParameterRanges"]
    assert {kind for kind, values in ranges.items() if values} == kinds
    names = {r["Name"] for values in ranges.values() for r in values}
    static = request["TrainingJobDefinition"].get("StaticHyperParameters", {})
    if strategy == "Hyperband":
        assert "epochs" not in names and static["epochs"] == "10"
    if strategy == "Grid":
        combinations = 1
        for r in ranges["CategoricalParameterRanges"]:
            combinations *= len(r["Values"])
        assert combinations == config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 12


def test_grid_sends_the_number_of_combinations_as_max_jobs(aws, data_in_s3, cli):
    """AWS, Grid search: "If specified, the value of MaxNumberOfTrainingJobs should equal the
    total number of distinct categorical combinations possible"; 2 x 3 here, not --max-jobs'
    default of 12, and no more parallel jobs than jobs."""
    code = cli(
        "tune", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3,
        "--strategy", "Grid", "--only-ranges",
        "--range", "batch_size=categorical:32,64", "--range", "optimizer=categorical:sgd,adam,adamw",
    )  # fmt: skip
    assert code == 0
    config = aws.recorded.one("CreateHyperParameterTuningJob")["HyperParameterTuningJobConfig"]
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}


def test_grid_with_other_max_jobs_is_refused_before_any_aws_call(aws, capsys, cli):
    code = cli(
        "tune", "--role", aws.role_arn, "--data", "s3://bucket/pets", "--strategy", "Grid",
        "--only-ranges", "--range", "batch_size=categorical:32,64", "--max-jobs", "12",
    )  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "2 combinations" in error and "--max-jobs 12" in error and "--max-jobs 2" in error
    assert aws.recorded.operations() == []  # not even sts:GetCallerIdentity for the image URI


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--strategy", "Grid", "--range", "momentum=continuous:0.8:0.99"],
            "Grid takes categorical ranges only, but momentum is continuous",
        ),
        (["--strategy", "Hyperband", "--early-stopping", "Auto"], "requires early stopping Off"),
        (["--strategy", "Hyperband", "--range", "epochs=integer:2:5"], "epochs cannot be tuned"),
    ],
)
def test_settings_a_strategy_refuses_fail_before_any_aws_call(aws, capsys, cli, arguments, message):
    code = cli("tune", "--image", IMAGE, "--role", aws.role_arn, "--data", "s3://bucket/pets", *arguments)
    assert code == 2
    assert message in capsys.readouterr().err
    assert aws.recorded.operations() == []


def test_rule_jobs_use_the_documented_evaluator_image_of_the_region(aws, data_in_s3, cli):
    code = cli(
        "train", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3,
        "--region", "us-west-2", "--debugger-rules", "overfit",
    )  # fmt: skip
    assert code == 0
    (rule,) = aws.recorded.one("CreateTrainingJob")["DebugRuleConfigurations"]
    assert rule["RuleEvaluatorImage"] == (
        "759209512951.dkr.ecr.us-west-2.amazonaws.com/sagemaker-debugger-rule-evaluator:latest"
    )


def test_rule_jobs_in_a_region_without_a_known_evaluator_fail_before_any_request(
    aws, data_in_s3, capsys, cli
):
    before = len(aws.recorded.operations())
    code = cli(
        "train", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3,
        "--region", "eu-west-1", "--debugger-rules", "overfit",
    )  # fmt: skip
    assert code == 2
    assert "--rule-evaluator-image" in capsys.readouterr().err
    new_operations = aws.recorded.operations()[before:]
    assert "CreateTrainingJob" not in new_operations and "PutObject" not in new_operations


@pytest.mark.parametrize(
    "arguments, messages",
    [
        (
            ["train", "--hp", "learning_rate=50", "--hp", "epochs=-3", "--hp", "model=resnet9000"],
            [
                "epochs='-3' is invalid: must be an integer in [1, 10000]",
                "learning_rate='50' is invalid: must be a number in (0.0, 10.0]",
                "model='resnet9000' is invalid: must be a torchvision classification model",
            ],
        ),
        (["train", "--hp", "epoch=3"], ["unknown hyperparameter 'epoch'; allowed: amp,"]),
        (
            ["tune", "--range", "learning_rate=continuous:5:50", "--range", "batch_size=categorical:0,-1"],
            [
                "--range batch_size: value '0' is invalid",
                "--range batch_size: value '-1' is invalid",
                "--range learning_rate: bound '50.0' is invalid: must be a number in (0.0, 10.0]",
            ],
        ),
        (["tune", "--range", "epochs=continuous:2:9"], ["epochs is integer, so its range must be integer"]),
        (["tune", "--hp", "optimizer=lbfgs"], ["optimizer='lbfgs' is invalid: must be one of sgd"]),
        (["tune", "--local", "--range", "image_size=integer:4:64"], ["bound '4' is invalid"]),
    ],
)
def test_hyperparameters_the_container_would_refuse_fail_before_any_aws_call(
    aws, capsys, cli, arguments, messages
):
    """The same schema and messages as the training container: no job starts to fail there."""
    code = cli(*arguments, "--image", IMAGE, "--role", aws.role_arn, "--data", "s3://bucket/pets")
    assert code == 2
    error = capsys.readouterr().err
    assert all(message in error for message in messages), error
    assert aws.recorded.operations() == []


def test_a_hyperparameters_file_the_container_would_refuse_fails_before_any_aws_call(
    aws, capsys, cli, tmp_path
):
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"hyperparameters": {"batch_size": "0", "momentum": "0.9"}}))
    code = cli(
        "train", "--image", IMAGE, "--role", aws.role_arn, "--data", "s3://bucket/pets",
        "--hyperparameters-file", best,
    )  # fmt: skip
    assert code == 2
    assert "batch_size='0' is invalid: must be an integer in [1, 65536]" in capsys.readouterr().err
    assert aws.recorded.operations() == []


ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"


def test_train_sends_the_tensorboard_output_config_and_the_mlflow_environment(aws, data_in_s3, cli):
    code = cli(
        "train", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3,
        "--tensorboard-s3-uri", f"s3://{BUCKET}/tensorboard/", "--mlflow-tracking-uri", ARN,
        "--mlflow-register-model", "pets", "--base-job-name", "pets-job",
        "--env", "MLFLOW_EXPERIMENT_NAME=mine",
    )  # fmt: skip
    assert code == 0
    request = aws.recorded.one("CreateTrainingJob")
    job = request["TrainingJobName"]
    assert request["TensorBoardOutputConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/tensorboard/{job}",
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    assert request["Environment"] == {
        "CLASSIFIER_IMAGE_URI": aws.pinned(IMAGE),
        "MLFLOW_TRACKING_URI": ARN,
        "MLFLOW_EXPERIMENT_NAME": "mine",  # --env wins over the default, the base job name
        "CLASSIFIER_MLFLOW_REGISTER_MODEL": "pets",
    }


def test_tune_tells_each_trial_its_tuning_job_and_syncs_tensorboard_with_the_checkpoints(
    aws, data_in_s3, cli
):
    code = cli(
        "tune", "--image", IMAGE, "--role", aws.role_arn, "--data", data_in_s3, "--max-jobs", "2",
        "--tensorboard-s3-uri", f"s3://{BUCKET}/tb", "--mlflow-tracking-uri", "https://mlflow.example.com",
    )  # fmt: skip
    assert code == 0
    request = aws.recorded.one("CreateHyperParameterTuningJob")
    tuning_job = request["HyperParameterTuningJobName"]
    definition = request["TrainingJobDefinition"]
    assert "TensorBoardOutputConfig" not in definition, "HyperParameterTrainingJobDefinition has none"
    assert definition["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/tb/{tuning_job}",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert definition["Environment"] == {
        "CLASSIFIER_IMAGE_URI": aws.pinned(IMAGE),
        "CLASSIFIER_TUNING_JOB_NAME": tuning_job,
        "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
        "MLFLOW_EXPERIMENT_NAME": tuning_job,
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--mlflow-tracking-uri", "mlflow.example.com"], "neither an http(s):// URL nor"),
        (["--tensorboard-s3-uri", "/tmp/tb"], "is not an s3:// URI"),
        (["--mlflow-experiment", "x"], "need --mlflow-tracking-uri"),
    ],
)
def test_watching_options_that_cannot_work_fail_before_any_aws_call(aws, capsys, cli, arguments, message):
    code = cli("train", "--image", IMAGE, "--role", aws.role_arn, "--data", f"s3://{BUCKET}/pets", *arguments)
    assert code != 0 and message in capsys.readouterr().err
    assert aws.recorded.operations() == []
