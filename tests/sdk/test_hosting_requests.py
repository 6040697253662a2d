"""The requests behind each hosting option: asynchronous, serverless and multi-model endpoints,
automatic scaling, batch transform. Sent to moto in server mode where moto has the API
(SageMaker control plane, Application Auto Scaling, S3); InvokeEndpoint(Async) through
botocore's Stubber, which validates our parameters against the service model.
"""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-image-classifier:latest"
BUCKET = "hosting-bucket"
MODEL_DATA = f"s3://{BUCKET}/jobs/job-1/output/model.tar.gz"
SUCCESS_TOPIC = "arn:aws:sns:us-east-1:123456789012:classified"
ERROR_TOPIC = "arn:aws:sns:us-east-1:123456789012:failed"
ANSWER = {"predictions": [{"label": "7", "index": 7, "probability": 0.97}]}


def _deploy(cli, aws, *extra) -> int:
    return cli(
        "deploy", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--endpoint-name", "digits", *extra,
    )  # fmt: skip


def test_async_deploy_with_autoscaling_then_delete_removes_the_policy(aws, cli, capsys):
    code = _deploy(
        cli, aws, "--async-output", f"s3://{BUCKET}/async-out/", "--async-failure",
        f"s3://{BUCKET}/async-failed/", "--success-topic", SUCCESS_TOPIC, "--error-topic", ERROR_TOPIC,
        "--async-max-concurrency", "2", "--autoscale", "0:4", "--target-invocations", "120",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    deployed = json.loads(capsys.readouterr().out)
    # The server must take async's 1 GB payloads and one-hour requests.
    assert aws.recorded.one("CreateModel")["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600",
    }
    config = aws.recorded.one("CreateEndpointConfig")
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {
            "S3OutputPath": f"s3://{BUCKET}/async-out/",
            "S3FailurePath": f"s3://{BUCKET}/async-failed/",
            "NotificationConfig": {"SuccessTopic": SUCCESS_TOPIC, "ErrorTopic": ERROR_TOPIC},
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }
    resource_id = "endpoint/digits/variant/AllTraffic"
    assert aws.recorded.one("RegisterScalableTarget") == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 0,
        "MaxCapacity": 4,
    }
    policy = aws.recorded.one("PutScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ResourceId"] == resource_id
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 120.0
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert deployed["autoscaling"]["scalable_target"] == resource_id
    scaling = aws.boto3("application-autoscaling")
    assert len(scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]) == 1

    assert cli("delete", "digits") == 0
    assert aws.recorded.one("DeleteScalingPolicy")["PolicyName"] == policy["PolicyName"]
    assert aws.recorded.one("DeregisterScalableTarget")["ResourceId"] == resource_id
    ops = aws.recorded.operations()
    assert ops.index("DeregisterScalableTarget") < ops.index("DeleteEndpoint")
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []


def test_serverless_deploy_sends_serverless_config_and_one_worker(aws, cli, capsys):
    assert _deploy(cli, aws, "--serverless", "2048", "--max-concurrency", "5") == 0, capsys.readouterr().err
    assert aws.recorded.one("CreateEndpointConfig")["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": aws.recorded.one("CreateModel")["ModelName"],
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
        }
    ]
    assert aws.recorded.one("CreateModel")["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "4",
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--serverless", "1500"), "one of (1024"),
        (("--serverless", "2048", "--autoscale", "1:2", "--target-invocations", "5"), "scales by itself"),
        (("--autoscale", "0:2", "--target-invocations", "5"), "1 <= MIN"),
        (("--autoscale", "1:2"), "--target-invocations"),
        (("--success-topic", SUCCESS_TOPIC), "--async-output"),
    ],
)
def test_inconsistent_hosting_options_are_refused_before_any_request(aws, cli, capsys, extra, message):
    assert _deploy(cli, aws, *extra) == 2
    assert message in capsys.readouterr().err
    assert "CreateModel" not in aws.recorded.operations()


def test_multi_model_deploy_sends_mode_and_the_prefix(aws, cli, capsys):
    code = cli(
        "deploy", "--image", IMAGE, "--role", aws.role_arn, "--model-data", f"s3://{BUCKET}/models/",
        "--endpoint-name", "many", "--multi-model",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    container = aws.recorded.one("CreateModel")["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/models/"


@pytest.fixture
def ctx(moto_endpoint, monkeypatch):
    """One fixed context on moto (S3), whose sagemaker-runtime client a Stubber can answer."""
    import requests

    from classifier_client import config

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    context = config.aws_context(role_arn="arn:aws:iam::123456789012:role/Exec")
    monkeypatch.setattr(config, "aws_context", lambda *a, **k: context)
    return context


def _body(data: dict) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_invoke_target_model_names_the_archive(ctx, cli, tmp_path, capsys):
    image = tmp_path / "seven.png"
    image.write_bytes(b"\x89PNG fake")
    with Stubber(ctx.client("sagemaker-runtime")) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": _body(ANSWER), "ContentType": "application/json"},
            {
                "EndpointName": "many",
                "Body": image.read_bytes(),
                "ContentType": "image/png",
                "Accept": "application/json",
                "CustomAttributes": "top_k=1",
                "TargetModel": "customer-a.tar.gz",
            },
        )
        assert cli("invoke", "many", image, "--top-k", "1", "--target-model", "customer-a.tar.gz") == 0
        stub.assert_no_pending_responses()
    assert capsys.readouterr().out.strip() == f"{image}: 7 (0.970)"


def test_invoke_async_uploads_invokes_and_reads_the_output(ctx, cli, tmp_path, capsys):
    s3 = ctx.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    output = f"s3://{BUCKET}/async-out/result-1.out"
    s3.put_object(Bucket=BUCKET, Key="async-out/result-1.out", Body=json.dumps(ANSWER).encode())
    image = tmp_path / "seven.png"
    image.write_bytes(b"\x89PNG fake")
    runtime = ctx.client("sagemaker-runtime")
    stub_calls = []
    runtime.meta.events.register(
        "provide-client-params.sagemaker-runtime.InvokeEndpointAsync",
        lambda params, **_: stub_calls.append(dict(params)),
    )
    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint_async",
            {"InferenceId": "1", "OutputLocation": output, "FailureLocation": f"s3://{BUCKET}/f/1.out"},
            {
                "EndpointName": "digits",
                "InputLocation": ANY,  # the uploaded key, checked below
                "ContentType": "image/png",
                "Accept": "application/json",
                "CustomAttributes": "top_k=1",
                "InvocationTimeoutSeconds": 600,
            },
        )
        code = cli(
            "invoke", "digits", image, "--top-k", "1", "--async", f"s3://{BUCKET}/async-in/",
            "--async-timeout", "600", "--poll-interval", "0.1",
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == f"{image}: 7 (0.970)"
    uploaded = s3.list_objects_v2(Bucket=BUCKET, Prefix="async-in/")["Contents"]
    assert [o["Key"].endswith("-seven.png") for o in uploaded] == [True]
    sent = stub_calls[0]["InputLocation"]
    assert sent == f"s3://{BUCKET}/{uploaded[0]['Key']}"


def test_transform_sends_a_transform_job_consistent_with_the_container(aws, cli, capsys):
    code = cli(
        "transform", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--input", f"s3://{BUCKET}/images/", "--output", f"s3://{BUCKET}/classified/",
        "--max-payload-mb", "10", "--batch-strategy", "SingleRecord", "--job-name", "digits-batch",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    job = aws.recorded.one("CreateTransformJob")
    assert job["TransformJobName"] == "digits-batch"
    assert job["ModelName"] == aws.recorded.one("CreateModel")["ModelName"]
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/images/"}},
        "ContentType": "application/x-image",
        "SplitType": "None",
    }
    assert job["TransformOutput"] == {
        "S3OutputPath": f"s3://{BUCKET}/classified/",
        "Accept": "application/json",
    }
    assert job["BatchStrategy"] == "SingleRecord" and job["MaxPayloadInMB"] == 10
    # The container is told the same limits, so it accepts the mini-batches it is sent.
    assert job["Environment"] == {
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "10",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
    }


def test_transform_split_by_line_needs_json_lines(aws, cli, capsys):
    code = cli(
        "transform", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--input", f"s3://{BUCKET}/images/", "--output", f"s3://{BUCKET}/out/", "--split-type", "Line",
    )  # fmt: skip
    assert code == 2
    assert "application/jsonlines" in capsys.readouterr().err
