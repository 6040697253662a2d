"""Calls moto cannot answer faithfully (a tuning job's best job, InvokeEndpoint), checked
with botocore's Stubber: it validates our parameters against the service model and
the canned responses against the response shapes.
"""

from __future__ import annotations

import datetime as dt
import io
import json

from botocore.response import StreamingBody
from botocore.stub import Stubber

from classifier.constants import CUSTOM_ATTRIBUTES_HEADER

NOW = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
TUNING_JOB = "img-clf-hpo-20261121-120000-001"
BEST_JOB = "img-clf-hpo-20261121-120000-001-007-abcd1234"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"


def _sdk_client(ctx, service: str):
    """The client sagemaker.core.resources uses for this boto3 session (cached per session)."""
    from sagemaker.core.utils.utils import SageMakerClient

    return SageMakerClient(session=ctx.boto_session, region_name=ctx.region).get_client(service)


def tuning_job_description(status: str, counters: dict, **extra) -> dict:
    """A DescribeHyperParameterTuningJob response (Stubber checks it against the shape)."""
    return {
        "HyperParameterTuningJobName": TUNING_JOB,
        "HyperParameterTuningJobArn": f"{ARN}:hyper-parameter-tuning-job/{TUNING_JOB}",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": NOW,
        "TrainingJobStatusCounters": counters,
        "ObjectiveStatusCounters": {"Succeeded": counters.get("Completed", 0)},
        **extra,
    }


def test_best_prints_table_and_json_and_writes_hyperparameters_for_train(ctx, cli, tmp_path, capsys):
    sagemaker = _sdk_client(ctx, "sagemaker")
    with Stubber(sagemaker) as stub:
        stub.add_response(
            "describe_hyper_parameter_tuning_job",
            tuning_job_description(
                "Completed",
                {"Completed": 8},
                BestTrainingJob={
                    "TrainingJobName": BEST_JOB,
                    "TrainingJobArn": f"{ARN}:training-job/{BEST_JOB}",
                    "CreationTime": NOW,
                    "TrainingJobStatus": "Completed",
                    "TunedHyperParameters": {"learning_rate": "0.0031", "batch_size": "32"},
                    "FinalHyperParameterTuningJobObjectiveMetric": {
                        "MetricName": "valid_accuracy",
                        "Value": 0.8712,
                    },
                },
            ),
            {"HyperParameterTuningJobName": TUNING_JOB},
        )
        stub.add_response(
            "describe_training_job",
            {
                "TrainingJobName": BEST_JOB,
                "TrainingJobArn": f"{ARN}:training-job/{BEST_JOB}",
                "ModelArtifacts": {"S3ModelArtifacts": f"s3://b/{BEST_JOB}/output/model.tar.gz"},
                "TrainingJobStatus": "Completed",
                "SecondaryStatus": "Completed",
                "HyperParameters": {
                    "learning_rate": "0.0031",
                    "batch_size": "32",
                    "model": "resnet50",
                    "_tuning_objective_metric": "valid_accuracy",
                    "sagemaker_estimator_class_name": "x",
                },
                "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
                "ResourceConfig": {
                    "InstanceType": "ml.g4dn.xlarge",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 30,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                "CreationTime": NOW,
            },
            {"TrainingJobName": BEST_JOB},
        )
        out = tmp_path / "best.json"
        assert cli("best", TUNING_JOB, "--output", out) == 0
        stub.assert_no_pending_responses()

    printed = capsys.readouterr().out
    table, _, json_part = printed.partition("\n\n")
    assert "valid_accuracy" in table and "0.8712" in table
    assert "learning_rate *" in table and "model " in table and "model *" not in table
    best = json.loads(json_part)
    assert best["training_job"] == BEST_JOB
    assert best["objective"] == {"name": "valid_accuracy", "value": 0.8712}
    assert best["hyperparameters"] == {
        "batch_size": "32",
        "learning_rate": "0.0031",
        "model": "resnet50",
    }
    assert best["model_artifacts"].endswith("/output/model.tar.gz")
    assert json.loads(out.read_text()) == best

    from classifier_client.training import load_hyperparameters_file

    assert load_hyperparameters_file(out) == best["hyperparameters"]


def test_best_without_a_finished_job_says_so(ctx, cli, capsys):
    with Stubber(_sdk_client(ctx, "sagemaker")) as stub:
        stub.add_response(
            "describe_hyper_parameter_tuning_job",
            tuning_job_description("InProgress", {"InProgress": 2}),
            {"HyperParameterTuningJobName": TUNING_JOB},
        )
        assert cli("best", TUNING_JOB) == 2
    assert "no completed training job" in capsys.readouterr().err


def test_invoke_sends_the_image_with_content_type_accept_and_top_k(ctx, cli, tmp_path, capsys):
    image = tmp_path / "digit_7.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nnot-really-decoded-here")
    answer = {
        "predictions": [
            {"label": "7", "index": 7, "probability": 0.97},
            {"label": "1", "index": 1, "probability": 0.02},
        ]
    }
    body = json.dumps(answer).encode()
    runtime = ctx.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
            {
                "EndpointName": "digits",
                "Body": image.read_bytes(),
                "ContentType": "image/png",
                "Accept": "application/json",
                "CustomAttributes": "top_k=2",
            },
        )
        assert cli("invoke", "digits", image, "--top-k", "2") == 0
        stub.assert_no_pending_responses()
    assert capsys.readouterr().out.strip() == f"{image}: 7 (0.970), 1 (0.020)"
    # The header the server reads top_k from is the one botocore sends CustomAttributes in.
    shape = runtime.meta.service_model.operation_model("InvokeEndpoint").input_shape
    assert shape.members["CustomAttributes"].serialization["name"] == CUSTOM_ATTRIBUTES_HEADER
