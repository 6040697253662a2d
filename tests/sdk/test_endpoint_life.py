"""A live endpoint's life, request by request: variants and shadows, data capture, update with
traffic shifting and rollback alarms, weights, target variants, and delete cleaning up.

Everything moto has (models, endpoint configs, tags, CloudWatch alarms and their history) is
served by moto in server mode; UpdateEndpoint, which moto lacks, is answered by the test after
botocore has validated its parameters against the service model, and the answer changes moto's
endpoint as SageMaker's deployment would (or leaves it, as a rollback does).
"""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from tests.sdk.capture_records import capture_record

BUCKET = "life-bucket"
OLD = f"s3://{BUCKET}/jobs/job-1/output/model.tar.gz"
NEW = f"s3://{BUCKET}/jobs/job-2/output/model.tar.gz"
THIRD = f"s3://{BUCKET}/jobs/job-3/output/model.tar.gz"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-image-classifier:v1"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CAPTURE = f"s3://{BUCKET}/capture"


def _deploy(cli, aws, *extra) -> int:
    return cli("deploy", "--image", IMAGE, "--role", aws.role_arn, "--endpoint-name", "digits", *extra)


def _configs(aws) -> set[str]:
    return {
        c["EndpointConfigName"] for c in aws.boto3("sagemaker").list_endpoint_configs()["EndpointConfigs"]
    }


def _models(aws) -> set[str]:
    return {m["ModelName"] for m in aws.boto3("sagemaker").list_models()["Models"]}


def _completes(aws):
    """UpdateEndpoint as a deployment that completes: the endpoint then serves the new config."""

    def respond(_request):
        params = aws.recorded.one("UpdateEndpoint")
        sagemaker = aws.boto3("sagemaker")
        sagemaker.delete_endpoint(EndpointName=params["EndpointName"])
        created = sagemaker.create_endpoint(
            EndpointName=params["EndpointName"], EndpointConfigName=params["EndpointConfigName"]
        )
        return {"EndpointArn": created["EndpointArn"]}

    return respond


def _rolls_back(aws, alarm: str):
    """UpdateEndpoint as a deployment whose alarm fires: the endpoint keeps its old config."""

    def respond(_request):
        aws.boto3("cloudwatch").set_alarm_state(
            AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: the new fleet is slow"
        )
        endpoint = aws.boto3("sagemaker").describe_endpoint(EndpointName="digits")
        return {"EndpointArn": endpoint["EndpointArn"]}

    return respond


def _alarm_history(aws):
    """DescribeAlarmHistory (moto lacks it) from moto's alarm states: an alarm in ALARM
    changed to it when it was last updated, in CloudWatch's StateUpdate item format."""

    def respond(_request):
        params = aws.recorded.calls[-1][2]
        found = aws.boto3("cloudwatch").describe_alarms(AlarmNames=[params["AlarmName"]])["MetricAlarms"]
        if not found or found[0]["StateValue"] != "ALARM":
            return {"AlarmHistoryItems": []}
        alarm = found[0]
        data = {"oldState": {"stateValue": "OK"}, "newState": {"stateValue": "ALARM"}}
        item = {
            "AlarmName": alarm["AlarmName"],
            "Timestamp": alarm["StateUpdatedTimestamp"],
            "HistoryItemType": "StateUpdate",
            "HistorySummary": "Alarm updated from OK to ALARM",
            "HistoryData": json.dumps(data),
        }
        return {"AlarmHistoryItems": [item]}

    return respond


@pytest.fixture
def deployed(aws, cli, capsys):
    """An endpoint of one model with everything deploy can set, made on moto."""
    aws.answers["DescribeAlarmHistory"] = _alarm_history(aws)
    code = _deploy(
        cli, aws, "--model-data", OLD, "--workers", "2", "--env", "LOG_LEVEL=debug", "--instance-count", "2",
        "--subnets", "subnet-0abc", "--security-group-ids", "sg-0abc", "--kms-key", KEY,
        "--tag", "team=vision", "--data-capture", CAPTURE, "--capture-percent", "50",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    deployed = json.loads(capsys.readouterr().out)
    aws.recorded.calls.clear()
    return deployed


def test_deploy_with_data_capture_sends_input_and_output_with_json_as_text_and_the_key(aws, cli, capsys):
    assert _deploy(cli, aws, "--model-data", OLD, "--data-capture", CAPTURE, "--kms-key", KEY) == 0
    config = aws.recorded.one("CreateEndpointConfig")
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": CAPTURE,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        # Answers are JSON (and JSON lines): stored as text; images are not listed: base64.
        "CaptureContentTypeHeader": {
            "JsonContentTypes": ["application/json", "application/jsonlines", "application/x-jsonlines"]
        },
        "KmsKeyId": KEY,
    }
    # One model, one variant, no weight: the request deploy always sent.
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["AllTraffic"]
    assert "InitialVariantWeight" not in config["ProductionVariants"][0]


def test_deploy_two_variants_sends_one_model_each_with_weights_and_weights_moves_traffic(aws, cli, capsys):
    code = _deploy(cli, aws, "--variant", f"current={OLD}:3", "--variant", f"challenger={NEW}")
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    models = {
        c["ModelName"]: c["PrimaryContainer"]["ModelDataUrl"]
        for _, op, c in aws.recorded.calls
        if op == "CreateModel"
    }
    assert sorted(models.values()) == sorted([OLD, NEW])
    assert set(result["model"]) == {"current", "challenger"}
    variants = {v["VariantName"]: v for v in aws.recorded.one("CreateEndpointConfig")["ProductionVariants"]}
    assert variants["current"]["InitialVariantWeight"] == 3.0
    assert variants["challenger"]["InitialVariantWeight"] == 1.0
    assert models[variants["current"]["ModelName"]] == OLD
    assert models[variants["challenger"]["ModelName"]] == NEW

    aws.recorded.calls.clear()
    assert cli("weights", "digits", "challenger=3", "current=1") == 0, capsys.readouterr().err
    moved = json.loads(capsys.readouterr().out)
    assert aws.recorded.one("UpdateEndpointWeightsAndCapacities")["DesiredWeightsAndCapacities"] == [
        {"VariantName": "challenger", "DesiredWeight": 3.0},
        {"VariantName": "current", "DesiredWeight": 1.0},
    ]
    assert moved["traffic_share"] == {"current": 0.25, "challenger": 0.75}

    assert cli("weights", "digits", "champion=1") == 2
    assert "no production variant champion (it has: current, challenger)" in capsys.readouterr().err
    assert cli("weights", "digits", "current=0", "challenger=0") == 2
    assert "every weight is 0" in capsys.readouterr().err

    aws.recorded.calls.clear()
    assert cli("delete", "digits") == 0
    deleted = {p["ModelName"] for _, op, p in aws.recorded.calls if op == "DeleteModel"}
    assert deleted == set(result["model"].values()) and _models(aws) == set()


def test_deploy_with_a_shadow_copies_its_percent_of_the_requests(aws, cli, capsys):
    assert _deploy(cli, aws, "--model-data", OLD, "--shadow", f"candidate={NEW}:25") == 0, (
        capsys.readouterr().err
    )
    config = aws.recorded.one("CreateEndpointConfig")
    (production,) = config["ProductionVariants"]
    (shadow,) = config["ShadowProductionVariants"]
    assert shadow["VariantName"] == "candidate" and shadow["InstanceType"] == production["InstanceType"]
    assert shadow["InitialVariantWeight"] / production["InitialVariantWeight"] == 0.25
    models = {
        c["ModelName"]: c["PrimaryContainer"]["ModelDataUrl"]
        for _, op, c in aws.recorded.calls
        if op == "CreateModel"
    }
    assert models[shadow["ModelName"]] == NEW and models[production["ModelName"]] == OLD


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model-data", OLD, "--variant", f"a={NEW}"), "give --model-data, or one --variant"),
        (
            ("--variant", f"a={OLD}", "--variant", f"b={NEW}", "--shadow", f"s={THIRD}:10"),
            "exactly one production",
        ),
        (("--variant", f"a={OLD}", "--variant", f"a={NEW}"), "given more than once: a"),
        ((f"--variant=-bad={OLD}",), "is not a variant name"),
        (("--variant", f"a={OLD}:heavy"), "weight 'heavy' is not a number"),
        (("--variant", f"a={OLD}:0"), "every --variant has weight 0"),
        (("--model-data", OLD, "--shadow", f"s={NEW}"), "PERCENT a whole number 1-100"),
        (("--model-data", OLD, "--shadow", f"s={NEW}:101"), "PERCENT a whole number 1-100"),
        (("--model-data", OLD, "--data-capture", CAPTURE, "--capture-percent", "101"), "0-100"),
        (("--model-data", OLD, "--capture-percent", "5"), "--capture-percent needs --data-capture"),
        (("--model-data", OLD, "--data-capture", "bucket/key"), "not an S3 URI"),
        (("--model-data", OLD, "--serverless", "2048", "--data-capture", CAPTURE), "data capture, multiple"),
        (
            ("--model-data", OLD, "--async-output", f"s3://{BUCKET}/o/", "--shadow", f"s={NEW}:5"),
            "asynchronous",
        ),
    ],
)
def test_deploy_refuses_variant_and_capture_mistakes_before_any_request(aws, cli, capsys, args, message):
    assert _deploy(cli, aws, *args) == 2
    assert message in capsys.readouterr().err
    assert aws.recorded.calls == []


def test_update_carries_every_setting_over_shifts_by_canary_and_delete_removes_its_alarms(
    aws, cli, capsys, deployed
):
    before = aws.boto3("sagemaker").describe_model(ModelName=deployed["model"])
    aws.answers["UpdateEndpoint"] = _completes(aws)
    code = cli("update", "digits", "--model-data", NEW, "--canary", "10:300", "--termination-wait", "120",
               "--rollback-alarm", "team-alarm", "--wait")  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["outcome"] == "completed" and result["status"] == "InService"

    model = aws.recorded.one("CreateModel")
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == NEW
    # The live model's image (by digest), environment, role, VPC and tags carry over.
    assert container["Image"] == before["PrimaryContainer"]["Image"] and "@sha256:" in container["Image"]
    assert container["Environment"] == {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "LOG_LEVEL": "debug"}
    assert model["ExecutionRoleArn"] == aws.role_arn
    assert model["VpcConfig"] == {"SecurityGroupIds": ["sg-0abc"], "Subnets": ["subnet-0abc"]}
    assert model["Tags"] == [{"Key": "team", "Value": "vision"}]
    config = aws.recorded.one("CreateEndpointConfig")
    assert config["KmsKeyId"] == KEY and config["Tags"] == [{"Key": "team", "Value": "vision"}]
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 50
    assert config["DataCaptureConfig"]["KmsKeyId"] == KEY
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic" and variant["ModelName"] == model["ModelName"]

    update = aws.recorded.one("UpdateEndpoint")
    assert update["EndpointConfigName"] == config["EndpointConfigName"] == result["endpoint_config"]
    errors, latency = "digits-rollback-AllTraffic-5xx-errors", "digits-rollback-AllTraffic-model-latency"
    assert update["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 120,
            "MaximumExecutionTimeoutInSeconds": 2 * 300 + 120 + 3600,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": "team-alarm"}, {"AlarmName": errors}, {"AlarmName": latency}]
        },
    }
    assert (
        f"rollback alarms made by sm-classifier (deleted with the endpoint): {errors}, {latency}"
        in captured.err
    )
    alarms = {a["AlarmName"]: a for a in aws.boto3("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {errors, latency}
    # On the new fleet only: the dimension CloudWatch adds once it takes traffic.
    for alarm in alarms.values():
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dimensions == {
            "EndpointName": "digits",
            "VariantName": "AllTraffic",
            "EndpointConfigName": config["EndpointConfigName"],
        }
        assert alarm["Namespace"] == "AWS/SageMaker" and alarm["TreatMissingData"] == "notBreaching"
    assert alarms[errors]["MetricName"] == "Invocation5XXErrors" and alarms[errors]["Threshold"] == 0.01
    assert alarms[latency]["MetricName"] == "ModelLatency" and alarms[latency]["Threshold"] == 1_000_000

    # Completed: the old config and model are deleted, the new ones serve.
    assert _configs(aws) == {config["EndpointConfigName"]}
    assert _models(aws) == {model["ModelName"]}
    assert set(result["deleted"]) == {
        f"endpoint config {deployed['endpoint_config']}",
        f"model {deployed['model']}",
    }

    aws.recorded.calls.clear()
    assert cli("delete", "digits") == 0
    assert aws.recorded.one("DeleteAlarms") == {"AlarmNames": sorted([errors, latency])}
    assert aws.boto3("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert _configs(aws) == set() and _models(aws) == set()


def test_update_that_an_alarm_rolls_back_says_which_and_keeps_the_old_model(aws, cli, capsys, deployed):
    latency = "digits-rollback-AllTraffic-model-latency"
    aws.answers["UpdateEndpoint"] = _rolls_back(aws, latency)
    code = cli("update", "digits", "--model-data", NEW, "--latency-alarm-ms", "250", "--wait")
    captured = capsys.readouterr()
    assert code == 1
    result = json.loads(captured.out)
    assert result["outcome"] == "rolled back" and result["alarms_fired"] == [latency]
    assert f"update of digits rolled back: alarm {latency} fired" in captured.err
    assert (
        aws.boto3("cloudwatch").describe_alarms(AlarmNames=[latency])["MetricAlarms"][0]["Threshold"]
        == 250_000
    )
    # The endpoint serves the old config; the new config and model are deleted.
    assert (
        aws.boto3("sagemaker").describe_endpoint(EndpointName="digits")["EndpointConfigName"]
        == deployed["endpoint_config"]
    )
    assert _configs(aws) == {deployed["endpoint_config"]} and _models(aws) == {deployed["model"]}


def test_update_of_one_variant_keeps_the_other_and_its_weight(aws, cli, capsys):
    deployed = ("--variant", f"current={OLD}:3", "--variant", f"challenger={NEW}:1", "--instance-count", "2")
    assert _deploy(cli, aws, *deployed) == 0
    first = json.loads(capsys.readouterr().out)
    aws.recorded.calls.clear()
    aws.answers["UpdateEndpoint"] = _completes(aws)
    aws.answers["DescribeAlarmHistory"] = _alarm_history(aws)
    code = cli(
        "update",
        "digits",
        "--variant",
        f"challenger={THIRD}:2",
        "--linear",
        "20:60",
        "--no-default-alarms",
        "--wait",
    )
    assert code == 0, capsys.readouterr().err
    assert aws.recorded.one("CreateModel")["PrimaryContainer"]["ModelDataUrl"] == THIRD
    variants = {v["VariantName"]: v for v in aws.recorded.one("CreateEndpointConfig")["ProductionVariants"]}
    assert variants["current"]["ModelName"] == first["model"]["current"]
    assert variants["current"]["InitialVariantWeight"] == 3.0
    assert variants["challenger"]["InitialVariantWeight"] == 2.0
    deployment = aws.recorded.one("UpdateEndpoint")["DeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 60,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
    }
    assert "AutoRollbackConfiguration" not in deployment
    assert "PutMetricAlarm" not in aws.recorded.operations()
    # Completed: only the replaced variant's old model goes; the other one still serves.
    assert _models(aws) == {first["model"]["current"], aws.recorded.one("CreateModel")["ModelName"]}

    # A new model without a weight keeps the weight the variant serves with.
    aws.recorded.calls.clear()
    assert cli("update", "digits", "--variant", f"current={NEW}", "--no-default-alarms") == 0
    variants = {v["VariantName"]: v for v in aws.recorded.one("CreateEndpointConfig")["ProductionVariants"]}
    assert variants["current"]["InitialVariantWeight"] == 3.0
    assert variants["challenger"]["InitialVariantWeight"] == 2.0

    for args, message in [
        (("--model-data", THIRD), "has 2 production variants (current, challenger): name the one"),
        (("--variant", f"champion={THIRD}"), "has no such production variant"),
        (("--variant", f"current={THIRD}", "--rolling", "10:60"), '"Multi-variant inference endpoints"'),
    ]:
        aws.recorded.calls.clear()
        assert cli("update", "digits", *args) == 2
        assert message in capsys.readouterr().err
        assert not {"CreateModel", "UpdateEndpoint"} & set(aws.recorded.operations())


def test_rolling_update_sends_a_rolling_policy(aws, cli, capsys, deployed):
    aws.answers["UpdateEndpoint"] = _completes(aws)
    assert cli("update", "digits", "--model-data", NEW, "--rolling", "25:90") == 0, capsys.readouterr().err
    policy = aws.recorded.one("UpdateEndpoint")["DeploymentConfig"]["RollingUpdatePolicy"]
    assert policy == {
        "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
        "WaitIntervalInSeconds": 90,
        "MaximumExecutionTimeoutInSeconds": 4 * 90 + 3600,
    }
    assert json.loads(capsys.readouterr().out)["status"] == "Updating"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--canary", "60:10"), "AWS allows 1-50% of the variant's instances per canary step"),
        (("--linear", "5:10"), "AWS allows 10-50%"),
        (("--rolling", "50:3601"), "a wait of 0-3600 seconds"),
        (("--linear", "10:3000"), "AWS stops a deployment after at most 28800 s"),
        (("--canary", "10"), "takes PERCENT:SECONDS"),
        (("--termination-wait", "4000"), "--termination-wait must be 0-3600"),
        (("--env", "API_TOKEN=abc"), "API_TOKEN: holds a secret"),
        (("--rolling", "10:60", "--termination-wait", "60"), "a rolling update has no old fleet"),
    ],
)
def test_update_refuses_what_aws_would_before_any_request(aws, cli, capsys, args, message):
    assert cli("update", "digits", "--model-data", NEW, *args) == 2
    assert message in capsys.readouterr().err
    assert aws.recorded.calls == []


def test_a_traffic_shift_on_one_instance_is_refused_and_a_refused_update_leaves_nothing(aws, cli, capsys):
    assert _deploy(cli, aws, "--model-data", OLD) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli("update", "digits", "--model-data", NEW, "--canary", "10:60") == 2
    assert "a step needs at least 2 instances" in capsys.readouterr().err
    assert cli("update", "digits", "--model-data", f"s3://{BUCKET}/prefix/") == 2
    assert "must be the s3://.../model.tar.gz" in capsys.readouterr().err

    aws.answers["UpdateEndpoint"] = lambda _request: {
        "Error": {"Code": "ValidationException", "Message": "Cannot update endpoint"}
    }
    assert cli("update", "digits", "--model-data", NEW, "--no-default-alarms") == 1
    assert "AWS ValidationException: Cannot update endpoint" in capsys.readouterr().err
    assert _configs(aws) == {first["endpoint_config"]} and _models(aws) == {first["model"]}


def test_update_without_a_model_or_of_a_missing_endpoint_says_so(aws, cli, capsys):
    assert cli("update", "digits") == 2
    assert "give --model-data" in capsys.readouterr().err
    assert cli("update", "nowhere", "--model-data", NEW) == 2
    assert "no endpoint named nowhere" in capsys.readouterr().err


def test_invoke_with_a_target_variant_sends_it_and_shows_who_answered(ctx, cli, capsys, tmp_path):
    image = tmp_path / "seven.png"
    image.write_bytes(b"\x89PNG fake")
    answer = json.dumps({"predictions": [{"label": "7", "index": 7, "probability": 0.97}]}).encode()
    runtime = ctx.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint",
            {
                "Body": StreamingBody(io.BytesIO(answer), len(answer)),
                "ContentType": "application/json",
                "InvokedProductionVariant": "challenger",
            },
            {
                "EndpointName": "digits",
                "Body": b"\x89PNG fake",
                "ContentType": "image/png",
                "Accept": "application/json",
                "CustomAttributes": "top_k=3",
                "TargetVariant": "challenger",
            },
        )
        assert cli("invoke", "digits", image, "--target-variant", "challenger") == 0
        stub.assert_no_pending_responses()
    assert capsys.readouterr().out.strip() == f"{image}: 7 (0.970) [challenger]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"a={OLD}", ("a", OLD, None)),
        (f"a={OLD}:2.5", ("a", OLD, 2.5)),
        (f"b-2={OLD}:0", ("b-2", OLD, 0.0)),
    ],
)
def test_a_variant_s_weight_is_what_follows_the_uri(text, expected):
    from classifier_client.variants import parse_variant

    variant = parse_variant(text)
    assert (variant.name, variant.model_data, variant.weight) == expected


def _record(event_id: str, when: str, body: bytes, answer: object) -> str:
    return capture_record(event_id, when, "image/png", body, json.dumps(answer))


def test_captured_keeps_hostile_labels_and_event_ids_inside_the_review_set(aws, cli, capsys, tmp_path):
    """Labels come from the model's config and event ids from S3: neither may name a path
    outside DIR. Records that are not SageMaker's are skipped and counted, not fatal."""
    s3 = aws.boto3("s3")
    s3.create_bucket(Bucket=BUCKET)
    png = b"\x89PNG\r\n\x1a\n not really"
    lines = [
        _record(
            "../../escape",
            "2026-12-06T10:00:00Z",
            png,
            {"predictions": [{"label": "../../etc", "probability": 0.4}]},
        ),
        _record(
            "ok-1", "2026-12-06T10:01:00Z", png, {"predictions": [{"label": "/abs", "probability": 0.9}]}
        ),
        '{"captureData": {"endpointInput": {"data": "!!", "encoding": "BASE64"}}, "eventMetadata": {}}',
        "{truncated",
    ]
    key = "capture/digits/AllTraffic/2026/12/06/10/x.jsonl"
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    review = tmp_path / "review"
    assert cli("captured", "digits", "--output", review, "--capture-uri", CAPTURE, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 2 and summary["skipped_records"] == 2
    written = sorted(str(p.relative_to(review)) for p in review.rglob("*") if p.is_file())
    assert written == ["abs/ok-1.png", "captured.csv", "etc/escape.png"]
    assert not (tmp_path / "etc").exists()
    assert summary["by_label"]["../../etc"] == {"count": 1, "mean_top1": 0.4, "share_under_0.5": 1.0}

    # A second run with nothing new keeps the rows it wrote.
    assert (
        cli(
            "captured", "digits", "--output", review, "--capture-uri", CAPTURE, "--since", "2026-12-06T10:01Z"
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith(f"1 images from {CAPTURE}/digits/")
    assert len((review / "captured.csv").read_text().splitlines()) == 3


def test_captured_without_capture_on_the_endpoint_says_how_to_turn_it_on(aws, cli, capsys, tmp_path):
    assert _deploy(cli, aws, "--model-data", OLD) == 0
    capsys.readouterr()
    assert cli("captured", "digits", "--output", tmp_path / "r") == 2
    assert (
        "endpoint digits captures no data: deploy or update it with --data-capture" in capsys.readouterr().err
    )
    assert cli("captured", "digits", "--output", tmp_path / "r", "--since", "yesterday") == 2
    assert "--since takes an ISO time" in capsys.readouterr().err
