"""A regulated account's settings on every Create* request (docs/security.md), from the flags, from
the SageMaker SDK's defaults file, and from both with a flag over the file; and what AWS or
isolation would refuse, refused before any call. Requests go to moto in server mode, and botocore
validates each against the service model before it leaves."""

from __future__ import annotations

import json

import pytest
import yaml

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-image-classifier:v1"
BUCKET = "account-data"
DATA = f"s3://{BUCKET}/pets"
MODEL_DATA = f"s3://{BUCKET}/jobs/job-1/output/model.tar.gz"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
FILE_KEY = "arn:aws:kms:us-east-1:123456789012:key/file-0000"
FILE_VOLUME_KEY = "arn:aws:kms:us-east-1:123456789012:key/file-volume"
FLAGS = [
    "--subnets", "subnet-0a,subnet-0b", "--security-group-ids", "sg-0a", "--kms-key", KEY,
    "--network-isolation", "--tag", "team=vision", "--tag", "cost-centre=42",
]  # fmt: skip
VPC = {"SecurityGroupIds": ["sg-0a"], "Subnets": ["subnet-0a", "subnet-0b"]}
TAGS = [{"Key": "team", "Value": "vision"}, {"Key": "cost-centre", "Value": "42"}]
FILE_VPC = {"SecurityGroupIds": ["sg-file"], "Subnets": ["subnet-file"]}
FILE_TAGS = [{"Key": "team", "Value": "platform"}, {"Key": "owner", "Value": "ml"}]


def defaults_file(tmp_path, monkeypatch, **sections) -> None:
    """The SDK's user defaults file (SAGEMAKER_USER_CONFIG_OVERRIDE) holding ``sections``."""
    config = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
    config["SageMaker"].update(sections)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(path))


TRAINING_FILE = {
    "EnableNetworkIsolation": True,
    "EnableInterContainerTrafficEncryption": True,
    "VpcConfig": FILE_VPC,
    "OutputDataConfig": {"KmsKeyId": FILE_KEY},
    "ResourceConfig": {"VolumeKmsKeyId": FILE_VOLUME_KEY},
    "Tags": FILE_TAGS,
}
HOSTING_FILE = {
    "Model": {"EnableNetworkIsolation": True, "VpcConfig": FILE_VPC, "Tags": FILE_TAGS},
    "EndpointConfig": {
        "KmsKeyId": FILE_KEY,
        "AsyncInferenceConfig": {"OutputConfig": {"KmsKeyId": FILE_KEY}},
        "Tags": FILE_TAGS,
    },
    "Endpoint": {"Tags": FILE_TAGS},
    "TransformJob": {
        "TransformOutput": {"KmsKeyId": FILE_KEY},
        "TransformResources": {"VolumeKmsKeyId": FILE_VOLUME_KEY},
        "Tags": FILE_TAGS,
    },
}


CHANNELS = ["--train", f"{DATA}/train/", "--valid", f"{DATA}/valid/"]


def _train(cli, aws, *extra):
    return cli("train", "--image", IMAGE, "--role", aws.role_arn, *CHANNELS, *extra)


def _assert_training_fields(request, vpc, output_key, volume_key, tags, encrypted=True):
    assert request["VpcConfig"] == vpc
    assert request["OutputDataConfig"]["KmsKeyId"] == output_key
    assert request["ResourceConfig"].get("VolumeKmsKeyId") == volume_key
    assert request["EnableNetworkIsolation"] is True
    assert request.get("EnableInterContainerTrafficEncryption", False) is encrypted
    assert sorted(request["Tags"], key=str) == sorted(tags, key=str)


def test_train_sends_every_flag_and_encrypts_what_it_uploads(aws, cli, capsys):
    aws.boto3("s3").create_bucket(Bucket=BUCKET)
    code = _train(
        cli, aws, *FLAGS, "--encrypt-inter-container-traffic", "--max-retries", "3",
        "--debugger-rules", "overfit", "--rule-evaluator-image", IMAGE,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    request = aws.recorded.one("CreateTrainingJob")
    _assert_training_fields(request, VPC, KEY, KEY, TAGS)
    assert request["RetryStrategy"] == {"MaximumRetryAttempts": 3}
    assert request["AlgorithmSpecification"]["TrainingImage"] == aws.pinned(IMAGE)
    assert request["Environment"]["CLASSIFIER_IMAGE_URI"] == aws.pinned(IMAGE)  # MLflow's image tag
    upload = aws.recorded.one("PutObject")  # the custom rules' source file
    assert upload["ServerSideEncryption"] == "aws:kms" and upload["SSEKMSKeyId"] == KEY


def test_train_takes_the_sdk_defaults_file(aws, cli, tmp_path, monkeypatch):
    defaults_file(tmp_path, monkeypatch, TrainingJob=TRAINING_FILE)
    assert _train(cli, aws) == 0
    _assert_training_fields(
        aws.recorded.one("CreateTrainingJob"), FILE_VPC, FILE_KEY, FILE_VOLUME_KEY, FILE_TAGS
    )


def test_a_flag_wins_over_the_defaults_file(aws, cli, tmp_path, monkeypatch):
    defaults_file(tmp_path, monkeypatch, TrainingJob=TRAINING_FILE)
    assert _train(cli, aws, "--kms-key", KEY, "--subnets", "subnet-0c", "--tag", "team=vision") == 0
    request = aws.recorded.one("CreateTrainingJob")
    expected_tags = [{"Key": "team", "Value": "vision"}, {"Key": "owner", "Value": "ml"}]
    vpc = {"SecurityGroupIds": ["sg-file"], "Subnets": ["subnet-0c"]}
    _assert_training_fields(request, vpc, KEY, KEY, expected_tags)


def test_no_volume_key_on_an_instance_with_local_storage_but_the_output_key_still(aws, cli, caplog):
    assert _train(cli, aws, "--kms-key", KEY, "--instance-type", "ml.g5.xlarge") == 0
    request = aws.recorded.one("CreateTrainingJob")
    assert request["OutputDataConfig"]["KmsKeyId"] == KEY
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]
    assert "You can't request a VolumeKmsKeyId when using an instance type with local storage" in caplog.text


def test_tune_sends_the_settings_in_its_training_job_definition_and_tags_itself(
    aws, cli, tmp_path, monkeypatch
):
    defaults_file(tmp_path, monkeypatch, TrainingJob={"Tags": FILE_TAGS})
    code = cli(
        "tune", "--image", IMAGE, "--role", aws.role_arn, *CHANNELS, "--max-jobs", "2", *FLAGS,
        "--encrypt-inter-container-traffic", "--max-retries", "2",
    )  # fmt: skip
    assert code == 0
    request = aws.recorded.one("CreateHyperParameterTuningJob")
    definition = request["TrainingJobDefinition"]
    tags = [{"Key": "team", "Value": "vision"}, {"Key": "owner", "Value": "ml"}, TAGS[1]]
    _assert_training_fields({**definition, "Tags": request["Tags"]}, VPC, KEY, KEY, tags)
    assert definition["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert definition["AlgorithmSpecification"]["TrainingImage"] == aws.pinned(IMAGE)


def _deploy(cli, aws, *extra):
    return cli(
        "deploy", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--endpoint-name", "pets", *extra,
    )  # fmt: skip


def test_deploy_sends_the_settings_on_model_config_endpoint_scaling_and_alarm(aws, cli, capsys):
    code = _deploy(
        cli, aws, *FLAGS, "--async-output", f"s3://{BUCKET}/async/", "--autoscale", "0:2",
        "--target-backlog", "4",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    model = aws.recorded.one("CreateModel")
    assert model["VpcConfig"] == VPC and model["EnableNetworkIsolation"] is True and model["Tags"] == TAGS
    assert model["PrimaryContainer"]["Image"] == aws.pinned(IMAGE)
    config = aws.recorded.one("CreateEndpointConfig")
    assert config["KmsKeyId"] == KEY and config["Tags"] == TAGS
    assert config["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"] == KEY
    assert aws.recorded.one("CreateEndpoint")["Tags"] == TAGS
    assert aws.recorded.one("RegisterScalableTarget")["Tags"] == {"team": "vision", "cost-centre": "42"}
    assert aws.recorded.one("PutMetricAlarm")["Tags"] == TAGS


def test_deploy_and_transform_take_the_defaults_file(aws, cli, tmp_path, monkeypatch, capsys):
    defaults_file(tmp_path, monkeypatch, **HOSTING_FILE)
    assert _deploy(cli, aws, "--instance-type", "ml.c5.xlarge") == 0
    model = aws.recorded.one("CreateModel")
    assert model["VpcConfig"] == FILE_VPC and model["EnableNetworkIsolation"] and model["Tags"] == FILE_TAGS
    config = aws.recorded.one("CreateEndpointConfig")
    assert config["KmsKeyId"] == FILE_KEY and config["Tags"] == FILE_TAGS
    assert aws.recorded.one("CreateEndpoint")["Tags"] == FILE_TAGS
    code = cli(
        "transform", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--input", f"s3://{BUCKET}/in/", "--output", f"s3://{BUCKET}/out/", "--kms-key", KEY,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    job = aws.recorded.one("CreateTransformJob")
    assert job["TransformOutput"]["KmsKeyId"] == KEY and job["TransformResources"]["VolumeKmsKeyId"] == KEY
    assert job["Tags"] == FILE_TAGS
    transform_model = [p for _, op, p in aws.recorded.calls if op == "CreateModel"][-1]
    assert transform_model["VpcConfig"] == FILE_VPC and transform_model["Tags"] == FILE_TAGS


def test_an_endpoint_on_local_storage_gets_no_volume_key(aws, cli, caplog):
    assert _deploy(cli, aws, "--kms-key", KEY, "--instance-type", "ml.g4dn.xlarge") == 0
    assert "KmsKeyId" not in aws.recorded.one("CreateEndpointConfig")
    assert "KmsKeyId left out for ml.g4dn.xlarge" in caplog.text


def test_upload_data_names_the_key_by_its_arn_and_rewrites_what_another_key_encrypted(
    aws, cli, tmp_path, capsys, tiny_image_folder
):
    aws.boto3("s3").create_bucket(Bucket=BUCKET)
    kms = aws.boto3("kms")
    first = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/pets", TargetKeyId=first)
    source = tiny_image_folder(tmp_path / "pets", per_class=1)
    assert cli("upload-data", source, DATA, "--kms-key", "alias/pets") == 0
    puts = [params for _, op, params in aws.recorded.calls if op == "PutObject"]
    assert {p["SSEKMSKeyId"] for p in puts} == {first}
    capsys.readouterr()
    assert cli("upload-data", source, DATA, "--kms-key", "alias/pets") == 0
    assert "uploaded 0 files" in capsys.readouterr().err
    second = kms.create_key()["KeyMetadata"]["Arn"]
    assert cli("upload-data", source, DATA, "--kms-key", second) == 0
    assert "uploaded 6 files" in capsys.readouterr().err


def test_tuning_pretrained_under_isolation_without_weights_is_refused_before_any_call(aws, cli, capsys):
    code = cli(
        "tune", "--image", IMAGE, "--role", aws.role_arn, *CHANNELS, "--network-isolation",
        "--range", "pretrained=categorical:true,false",
    )  # fmt: skip
    assert code == 2
    assert "--range pretrained that may be true" in capsys.readouterr().err
    assert aws.recorded.operations() == []


def test_without_an_image_the_newest_one_push_made_is_pinned_after_the_offline_checks(aws, cli, capsys):
    assert cli("train", "--role", aws.role_arn, *CHANNELS, "--env", "API_KEY=x") == 2
    assert aws.recorded.operations() == [], "refused before the account is even looked up"
    newest = aws.push_image("sagemaker-image-classifier", "v3")
    assert cli("train", "--role", aws.role_arn, *CHANNELS) == 0
    image = aws.recorded.one("CreateTrainingJob")["AlgorithmSpecification"]["TrainingImage"]
    assert image == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-image-classifier@{newest}"


def test_deploy_asked_for_the_serving_image_pins_the_newest_one_push_serve_only_made(aws, cli, capsys):
    model_data = "s3://bucket/jobs/j/output/model.tar.gz"
    serving = aws.push_image("sagemaker-image-classifier-serve", "build-1")
    code = cli(
        "deploy",
        "--role",
        aws.role_arn,
        "--model-data",
        model_data,
        "--endpoint-name",
        "e",
        "--serving-image",
    )
    assert code == 0, capsys.readouterr().err
    image = aws.recorded.one("CreateModel")["PrimaryContainer"]["Image"]
    assert image == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-image-classifier-serve@{serving}"
    assert (
        cli("deploy", "--image", "x", "--serving-image", "--model-data", model_data, "--endpoint-name", "e")
        == 2
    )
    assert "give one of them" in capsys.readouterr().err


def test_upload_data_writes_every_object_with_the_key_and_skips_them_on_a_rerun(
    aws, cli, tmp_path, capsys, tiny_image_folder
):
    aws.boto3("s3").create_bucket(Bucket=BUCKET)
    source = tiny_image_folder(tmp_path / "pets", per_class=1)
    assert cli("upload-data", source, DATA, "--kms-key", KEY) == 0
    puts = [params for _, op, params in aws.recorded.calls if op == "PutObject"]
    assert len(puts) == 6
    assert all(p["ServerSideEncryption"] == "aws:kms" and p["SSEKMSKeyId"] == KEY for p in puts)
    head = aws.boto3("s3").head_object(Bucket=BUCKET, Key="pets/train/cat/0.png")
    assert head["ServerSideEncryption"] == "aws:kms"
    capsys.readouterr()
    assert cli("upload-data", source, DATA, "--kms-key", KEY) == 0
    assert "uploaded 0 files" in capsys.readouterr().err


ISOLATED_MLFLOW = "network isolation with an MLflow"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--subnets", "subnet-0a"], "a VPC needs both"),
        (["--security-group-ids", "sg-0a"], "without --subnets"),
        (["--subnets", "subnet_0a!", "--security-group-ids", "sg-0a"], "Pattern: [-0-9a-zA-Z]+"),
        (["--tag", "aws:team=x"], "reserved for AWS use"),
        (["--tag", "team=aws:x"], "reserved for AWS use"),
        (["--tag", "team=a;b"], "letters, digits, spaces and _.:/=+-@ only"),
        (["--tag", f"{'k' * 129}=v"], "keys of 1 to 128 characters"),
        ([arg for i in range(51) for arg in ("--tag", f"t{i}=v")], "at most 50"),
        (["--max-retries", "31"], "allows 1 to 30"),
        (["--network-isolation", "--mlflow-tracking-uri", "https://m.example.com"], ISOLATED_MLFLOW),
        (["--network-isolation", "--env", "MLFLOW_TRACKING_URI=https://m.example.com"], ISOLATED_MLFLOW),
        (["--network-isolation", "--hp", "pretrained=true"], "cannot download the pretrained weights"),
        (["--env", "HF_TOKEN=abc"], "HF_TOKEN: holds a secret"),
        (["--env", "db_Password=abc"], "db_Password: holds a secret"),
        (["--env", "MLFLOW_TRACKING_URI=https://ann:pw@m.example.com"], "TRACKING_URI: holds a secret"),
        (["--mlflow-tracking-uri", "https://ann:pw@mlflow.example.com"], "https://ann:***@mlflow.example.com"),
    ],
)  # fmt: skip
def test_what_aws_or_isolation_would_refuse_is_refused_before_any_call(aws, cli, capsys, arguments, message):
    assert _train(cli, aws, *arguments) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert "pw@" not in error
    assert aws.recorded.operations() == []


def test_isolation_with_pretrained_weights_in_a_channel_or_the_image_is_sent(aws, cli):
    assert _train(cli, aws, "--network-isolation", "--hp", "pretrained=true", "--weights-in-image") == 0
    assert (
        _train(cli, aws, "--network-isolation", "--hp", "pretrained=true", "--pretrained", f"{DATA}/w/") == 0
    )


def test_a_tracking_uri_from_the_defaults_file_under_isolation_is_refused(
    aws, cli, capsys, tmp_path, monkeypatch
):
    defaults_file(
        tmp_path, monkeypatch,
        TrainingJob={"EnableNetworkIsolation": True, "Environment": {"MLFLOW_TRACKING_URI": "https://m.example.com"}},
    )  # fmt: skip
    assert _train(cli, aws) == 2
    assert "network isolation with an MLflow" in capsys.readouterr().err
    assert "CreateTrainingJob" not in aws.recorded.operations()


def test_deploy_and_transform_refuse_a_secret_environment_before_any_call(aws, cli, capsys):
    assert _deploy(cli, aws, "--env", "OPENAI_API_KEY=x") == 2
    code = cli(
        "transform", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--input", f"s3://{BUCKET}/in/", "--output", f"s3://{BUCKET}/out/", "--env", "ACCESS_KEY=x",
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.count("holds a secret") == 2
    assert aws.recorded.operations() == []


def test_an_image_tag_that_does_not_resolve_is_refused_naming_it(aws, cli, capsys):
    missing = IMAGE.replace(":v1", ":never-pushed")
    assert cli("train", "--image", missing, "--role", aws.role_arn, *CHANNELS) == 2
    assert f"image {missing!r} does not resolve in ECR" in capsys.readouterr().err
    assert aws.recorded.operations() == ["DescribeImages"]


def test_a_repository_without_a_tag_pins_its_newest_image(aws, cli):
    newest = aws.push_image("sagemaker-image-classifier", "v2")
    assert cli("train", "--image", IMAGE.rpartition(":")[0], "--role", aws.role_arn, *CHANNELS) == 0
    image = aws.recorded.one("CreateTrainingJob")["AlgorithmSpecification"]["TrainingImage"]
    assert image.endswith(f"@{newest}")


def test_local_mode_says_in_one_line_what_it_does_not_apply(aws, cli, capsys, tmp_path):
    code = cli(
        "transform", "--local", "--input", tmp_path / "none", "--output", tmp_path / "out",
        "--model-data", tmp_path / "model.tar.gz", "--kms-key", KEY, "--tag", "team=vision",
    )  # fmt: skip
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "local mode does not apply" in line]
    assert lines == ["local mode does not apply: KMS keys, tags (sent to SageMaker only)"]


def test_the_defaults_file_is_validated_by_the_sdk_schema(aws, cli, capsys, tmp_path, monkeypatch):
    defaults_file(tmp_path, monkeypatch, TrainingJob={"EnableNetworkIsolation": "yes please"})
    assert _train(cli, aws) == 2
    assert "the SageMaker SDK defaults file cannot be used" in capsys.readouterr().err
    assert json.dumps(aws.recorded.operations()) == "[]"


def test_a_serverless_endpoint_in_a_vpc_or_isolated_is_refused_before_any_call(aws, cli, capsys):
    assert _deploy(cli, aws, "--serverless", "2048", "--network-isolation") == 2
    assert "Serverless Inference does not support" in capsys.readouterr().err
    assert aws.recorded.operations() == []
