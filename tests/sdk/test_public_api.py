"""``import classifier_client``: the public API a program uses, what importing it costs, the
refusals it shares with the CLI, and the docs' example against the real signatures."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys

import pytest

import classifier_client as clf
from tests.helpers import REPO_ROOT

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-image-classifier:v1"
CHANNELS = {"train": "s3://pets-data/pets/train/", "valid": "s3://pets-data/pets/valid/"}


def test_importing_the_package_loads_neither_boto3_nor_the_sdk():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, classifier_client; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not {"boto3", "botocore", "sagemaker", "optuna"} & set(ast.literal_eval(loaded))


def test_every_public_name_resolves_and_none_is_shadowed_by_a_module():
    import classifier_client.batch_transform  # a submodule import sets an attribute of the package

    assert sorted(clf.__all__) == sorted(set(clf.__all__))
    assert all(getattr(clf, name) is not None for name in clf.__all__)
    assert clf.transform is classifier_client.batch_transform.create_transform_job
    assert set(clf.__all__) <= set(dir(clf))
    with pytest.raises(AttributeError):
        clf.nothing_of_that_name  # noqa: B018


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: clf.Hyperparameters({"optimizer": "lbfgs"}), "optimizer='lbfgs' is invalid: must be one of"),
        (
            lambda: clf.SearchSettings(
                {"momentum": clf.Range("continuous", 0.8, 0.99)}, clf.strategy_named("Grid")
            ),
            "Grid takes categorical ranges only, but momentum is continuous",
        ),
        (
            lambda: clf.SearchSettings({"optimizer": clf.Range("categorical", values=("sgd",))}, max_jobs=0),
            "need 1 <= --max-parallel-jobs",
        ),
        (lambda: clf.strategy_named("Annealing"), "strategy 'Annealing': use one of Bayesian, Random"),
        (
            lambda: clf.TrainingSettings(image_uri=IMAGE, channels=CHANNELS, hyperparameters={"epochs": "0"}),
            "epochs='0' is invalid",
        ),
    ],
)
def test_a_program_gets_the_refusals_of_the_cli(make, message):
    with pytest.raises(clf.ConfigurationError, match=re.escape(message)):
        make()


def test_local_runs_refuse_what_only_sagemaker_does(tmp_path):
    from classifier_client.local_tuning import run_local_tuning
    from classifier_client.training import train_locally

    spot = clf.TrainingSettings(image_uri="img:test", channels=CHANNELS, spot=True)
    with pytest.raises(clf.ConfigurationError, match="--spot: for SageMaker jobs only"):
        train_locally(None, spot, tmp_path)
    search = clf.SearchSettings({"optimizer": clf.Range("categorical", values=("sgd", "adam"))})
    with pytest.raises(clf.ConfigurationError, match="--spot: for SageMaker tuning jobs only"):
        run_local_tuning(clf.TuningSettings(spot, search), "job", tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_program_trains_deploys_and_deletes_with_the_public_names(aws):
    ctx = clf.aws_context(role_arn=aws.role_arn)
    hyperparameters = clf.Hyperparameters({"epochs": 2, "amp": True})
    job = clf.train(ctx, clf.TrainingSettings(IMAGE, CHANNELS, hyperparameters))
    request = aws.recorded.one("CreateTrainingJob")
    assert request["TrainingJobName"] == job.training_job_name
    assert request["HyperParameters"] == {"epochs": "2", "amp": "true"}
    model_data = "s3://pets-data/jobs/job-1/output/model.tar.gz"
    deployed = clf.deploy(ctx, clf.DeploySettings(IMAGE, model_data, "pets"))
    assert deployed["status"] == "InService"
    assert "endpoint pets" in clf.delete(ctx, "pets")


def _from_python_example() -> str:
    text = (REPO_ROOT / "docs" / "sagemaker.md").read_text()
    section = text.split("## 7. From Python", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_docs_example_calls_the_public_names_as_they_are_defined():
    calls = [
        node
        for node in ast.walk(ast.parse(_from_python_example()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "clf"
    ]
    assert {"train", "deploy", "invoke", "delete"} <= {call.func.attr for call in calls}
    for call in calls:
        signature = inspect.signature(getattr(clf, call.func.attr))
        signature.bind(*call.args, **{keyword.arg: keyword.value for keyword in call.keywords})
