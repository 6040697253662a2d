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


def _backlog_tracking(endpoint: str, target: float) -> dict:
    """ "Autoscale an asynchronous endpoint": the queue per instance, tracked."""
    return {
        "TargetValue": target,
        "CustomizedMetricSpecification": {
            "MetricName": "ApproximateBacklogSizePerInstance",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
            "Statistic": "Average",
        },
        "ScaleInCooldown": 300,
        "ScaleOutCooldown": 60,
    }


def _backlog_alarm(endpoint: str, action: str) -> dict:
    """The guide's alarm for requests waiting at zero instances, which runs ``action``."""
    return {
        "MetricName": "HasBacklogWithoutCapacity",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Average",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2,
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "missing",
        "AlarmActions": [action],
    }


def test_async_deploy_scaling_in_to_zero_scales_on_the_queue_then_delete_removes_it(aws, cli, capsys):
    code = _deploy(
        cli, aws, "--async-output", f"s3://{BUCKET}/async-out/", "--async-failure",
        f"s3://{BUCKET}/async-failed/", "--success-topic", SUCCESS_TOPIC, "--error-topic", ERROR_TOPIC,
        "--async-max-concurrency", "2", "--autoscale", "0:4", "--target-backlog", "5",
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
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    assert aws.recorded.one("RegisterScalableTarget") == {**target, "MinCapacity": 0, "MaxCapacity": 4}
    policies = {p["PolicyType"]: p for _, op, p in aws.recorded.calls if op == "PutScalingPolicy"}
    assert set(policies) == {"TargetTrackingScaling", "StepScaling"}
    # "Autoscale an asynchronous endpoint": track the queue per instance...
    tracking = policies["TargetTrackingScaling"]
    assert tracking["ResourceId"] == resource_id
    assert tracking["TargetTrackingScalingPolicyConfiguration"] == _backlog_tracking("digits", 5.0)
    # ...and add one instance when requests wait at zero instances, on the guide's alarm.
    step = policies["StepScaling"]
    assert {k: step[k] for k in target} == target
    assert step["StepScalingPolicyConfiguration"] == {
        "AdjustmentType": "ChangeInCapacity",
        "MetricAggregationType": "Average",
        "Cooldown": 300,
        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
    }
    alarm = aws.recorded.one("PutMetricAlarm")
    assert {k: v for k, v in alarm.items() if k not in ("AlarmName", "AlarmDescription")} == _backlog_alarm(
        "digits", deployed["autoscaling"]["scale_out_from_zero"]
    )
    scaling = aws.boto3("application-autoscaling")
    stored = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert {p["PolicyARN"] for p in stored} == {
        deployed["autoscaling"]["policy"],
        deployed["autoscaling"]["scale_out_from_zero"],
    }
    cloudwatch = aws.boto3("cloudwatch")
    (stored_alarm,) = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"]
    assert stored_alarm["AlarmActions"] == alarm["AlarmActions"]

    assert cli("delete", "digits") == 0
    deleted = {p["PolicyName"] for _, op, p in aws.recorded.calls if op == "DeleteScalingPolicy"}
    assert deleted == {tracking["PolicyName"], step["PolicyName"]}
    assert aws.recorded.one("DeregisterScalableTarget")["ResourceId"] == resource_id
    # Deleting a step policy leaves its alarm (DeleteScalingPolicy): delete removes it too.
    assert aws.recorded.one("DeleteAlarms") == {"AlarmNames": [alarm["AlarmName"]]}
    ops = aws.recorded.operations()
    assert ops.index("DeregisterScalableTarget") < ops.index("DeleteEndpoint")
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []


def test_realtime_autoscaling_tracks_invocations_per_instance(aws, cli, capsys):
    code = _deploy(cli, aws, "--autoscale", "1:3", "--target-invocations", "600")
    assert code == 0, capsys.readouterr().err
    policy = aws.recorded.one("PutScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 600.0
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert "PutMetricAlarm" not in aws.recorded.operations()
    assert cli("delete", "digits") == 0
    assert "DeleteAlarms" not in aws.recorded.operations()


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
        (
            ("--async-output", f"s3://{BUCKET}/o/", "--autoscale", "0:2", "--target-invocations", "5"),
            "give --target-backlog N",
        ),
        (("--autoscale", "1:2", "--target-backlog", "5"), "use --target-invocations"),
    ],
)
def test_inconsistent_hosting_options_are_refused_before_any_request(aws, cli, capsys, extra, message):
    assert _deploy(cli, aws, *extra) == 2
    assert message in capsys.readouterr().err
    assert "CreateModel" not in aws.recorded.operations()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--multi-model", "--async-output", f"s3://{BUCKET}/async-out/"),
            "--multi-model cannot be combined with --async-output: InvokeEndpointAsync has no TargetModel",
        ),
        (
            ("--multi-model", "--instance-type", "ml.g5.xlarge"),
            "--multi-model on the GPU instance type ml.g5.xlarge",
        ),
        (
            ("--multi-model", "--instance-type", "ml.p3.2xlarge"),
            "only with its Triton Inference Server container",
        ),
    ],
)
def test_multi_model_combinations_sagemaker_does_not_serve_are_refused_before_sts(
    aws, cli, capsys, extra, message
):
    # No --image: a late check would first ask STS for the account to build the image URI.
    code = cli(
        "deploy", "--role", aws.role_arn, "--model-data", f"s3://{BUCKET}/models/",
        "--endpoint-name", "many", *extra,
    )  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert aws.recorded.operations() == []


def test_invoke_async_with_a_target_model_is_refused_before_any_request(aws, cli, capsys, tmp_path):
    image = tmp_path / "seven.png"
    image.write_bytes(b"\x89PNG fake")
    code = cli("invoke", "many", image, "--async", f"s3://{BUCKET}/async-in/", "--target-model", "a.tar.gz")
    assert code == 2
    assert "--async and --target-model cannot be combined" in capsys.readouterr().err
    assert aws.recorded.operations() == []


def test_multi_model_deploy_sends_mode_and_the_prefix(aws, cli, capsys):
    code = cli(
        "deploy", "--image", IMAGE, "--role", aws.role_arn, "--model-data", f"s3://{BUCKET}/models/",
        "--endpoint-name", "many", "--multi-model",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    container = aws.recorded.one("CreateModel")["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/models/"


def _body(data: dict) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_invoke_target_model_names_the_archive(on_moto, ctx, cli, tmp_path, capsys):
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


def test_invoke_async_uploads_invokes_and_reads_the_output(on_moto, ctx, cli, tmp_path, capsys):
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


def _access_denied(stub, location: str) -> None:
    """S3's answer to a missing key for a caller without s3:ListBucket (GetObject reference)."""
    bucket, key = location[5:].split("/", 1)
    stub.add_client_error(
        "get_object", service_error_code="AccessDenied", service_message="Access Denied",
        http_status_code=403, expected_params={"Bucket": bucket, "Key": key},
    )  # fmt: skip


def test_invoke_async_without_list_bucket_waits_through_403s_for_the_output(
    on_moto, ctx, cli, tmp_path, capsys
):
    output, failure = f"s3://{BUCKET}/async-out/r.out", f"s3://{BUCKET}/async-failed/r.out"
    image = tmp_path / "seven.png"
    image.write_bytes(b"\x89PNG fake")
    with Stubber(ctx.client("s3")) as s3, Stubber(ctx.client("sagemaker-runtime")) as runtime:
        s3.add_response("put_object", {})  # the upload of the input
        runtime.add_response(
            "invoke_endpoint_async",
            {"InferenceId": "1", "OutputLocation": output, "FailureLocation": failure},
            None,
        )
        _access_denied(s3, output)  # not written yet, and no s3:ListBucket: 403, not 404
        _access_denied(s3, failure)
        s3.add_response("get_object", {"Body": _body(ANSWER)}, {"Bucket": BUCKET, "Key": "async-out/r.out"})
        code = cli(
            "invoke", "digits", image, "--top-k", "1", "--async", f"s3://{BUCKET}/async-in/",
            "--poll-interval", "0",
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
        s3.assert_no_pending_responses()
    assert capsys.readouterr().out.strip() == f"{image}: 7 (0.970)"


def test_async_polling_that_times_out_on_403s_names_the_missing_permission(on_moto, ctx):
    from classifier_client.config import ConfigurationError
    from classifier_client.hosting import poll_async_result

    output, failure = f"s3://{BUCKET}/async-out/r.out", "s3://failures/async/r.out"
    s3 = ctx.client("s3")
    with Stubber(s3) as stub:
        _access_denied(stub, output)
        _access_denied(stub, failure)
        with pytest.raises(ConfigurationError) as raised:
            poll_async_result(s3, output, failure, timeout_s=0, poll_s=0)
        stub.assert_no_pending_responses()
    message = str(raised.value)
    assert message.startswith(f"no result at {output} within 0 s")
    assert f"grant s3:ListBucket on arn:aws:s3:::failures, arn:aws:s3:::{BUCKET} " in message


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
    # 10 MB x the most workers the image can advertise (8) stays within 100 MB: SageMaker asks it.
    assert "MaxConcurrentTransforms" not in job
    # The container is told the same limits, so it accepts the mini-batches it is sent.
    assert job["Environment"] == {
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "10",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
    }


def _transform(cli, aws, *extra) -> int:
    return cli(
        "transform", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--input", f"s3://{BUCKET}/images/", "--output", f"s3://{BUCKET}/out/", *extra,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "sent"),
    [
        # Left out, the image would answer its worker count (up to 8 on GPUs): 8 x 20 > 100.
        (("--max-payload-mb", "20"), 5),
        # The image answers SAGEMAKER_MODEL_SERVER_WORKERS: 2 x 20 MB is within the limit.
        (("--max-payload-mb", "20", "--env", "SAGEMAKER_MODEL_SERVER_WORKERS=2"), None),
        (("--max-payload-mb", "20", "--max-concurrent-transforms", "4"), 4),
        # No MaxPayloadInMB: the container's (its environment's) is the one multiplied.
        (("--env", "SAGEMAKER_MAX_PAYLOAD_IN_MB=30"), 3),
    ],
)
def test_transform_keeps_concurrency_times_payload_within_100_mb(aws, cli, capsys, extra, sent):
    """CreateTransformJob: "(MaxConcurrentTransforms * MaxPayloadInMB) also cannot exceed 100 MB"."""
    assert _transform(cli, aws, *extra) == 0, capsys.readouterr().err
    assert aws.recorded.one("CreateTransformJob").get("MaxConcurrentTransforms") == sent


def test_transform_over_100_mb_of_concurrent_payload_is_refused_before_any_request(aws, cli, capsys):
    code = cli(
        "transform", "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--input", f"s3://{BUCKET}/images/", "--output", f"s3://{BUCKET}/out/",
        "--max-payload-mb", "20", "--max-concurrent-transforms", "10",
    )  # fmt: skip
    assert code == 2
    assert "--max-concurrent-transforms 10 x MaxPayloadInMB 20 = 200 MB" in capsys.readouterr().err
    assert aws.recorded.operations() == []  # no sts:GetCallerIdentity for the image URI either


def test_transform_split_by_line_needs_json_lines(aws, cli, capsys):
    code = cli(
        "transform", "--image", IMAGE, "--role", aws.role_arn, "--model-data", MODEL_DATA,
        "--input", f"s3://{BUCKET}/images/", "--output", f"s3://{BUCKET}/out/", "--split-type", "Line",
    )  # fmt: skip
    assert code == 2
    assert "application/jsonlines" in capsys.readouterr().err
