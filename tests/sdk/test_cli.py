"""The CLI without any AWS: help, metric definitions, clear configuration errors, push."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.debugger_contract import RULE_NAMES, custom_rule_source_path
from classifier.metric_definitions import METRIC_DEFINITIONS, format_metrics_line, parse_metrics
from classifier_client.cli import build_parser
from classifier_client.debugger import rule_class_name
from classifier_client.image import PushOptions, push_image


def _subcommands(parser, capsys) -> list[str]:
    """Every subcommand the parser has (a new one is covered without editing this test), as
    argparse lists them when refusing an unknown one."""
    with pytest.raises(SystemExit):
        parser.parse_args(["no-such-command"])
    refusal = capsys.readouterr().err
    return sorted(re.findall(r"'([\w-]+)'", refusal.split("choose from", 1)[1]))


def test_every_subcommand_has_help_that_explains_it(capsys):
    parser = build_parser()
    names = _subcommands(parser, capsys)
    assert {"train", "tune", "best", "deploy", "transform", "invoke", "delete"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: sm-classifier {name}")
        assert len(text.split("\n\n")[1].split()) >= 10, f"{name} --help has no description"


def test_console_script_is_installed_and_imports_no_torch(tmp_path):
    """The installed ``sm-classifier`` script itself, with an audit hook that fails the process
    on any import of torch or smdebug."""
    script = Path(sys.executable).with_name("sm-classifier")
    assert script.is_file(), f"{script} is not installed (pip install -e .)"
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "def _refuse(event, args):\n"
        "    if event == 'import' and args[0].split('.')[0] in ('torch', 'smdebug'):\n"
        "        raise ImportError(f'heavy import: {args[0]}')\n"
        "sys.addaudithook(_refuse)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([str(script), "metric-definitions"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == METRIC_DEFINITIONS


def test_metric_definitions_prints_the_shared_regexes(cli, capsys):
    assert cli("metric-definitions") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == METRIC_DEFINITIONS
    line = format_metrics_line(
        {"epoch": 3}, train_loss=0.81, train_accuracy=0.7, valid_loss=0.93, valid_accuracy=0.78
    )
    matched = {
        d["Name"]: float(re.search(d["Regex"], line).group(1)) for d in printed if re.search(d["Regex"], line)
    }
    assert matched == parse_metrics(line) == {
        "train_loss": 0.81, "train_accuracy": 0.7, "valid_loss": 0.93, "valid_accuracy": 0.78,
    }  # fmt: skip
    assert cli("metric-definitions", "--with-objective") == 0
    assert json.loads(capsys.readouterr().out)["Objective"] == {
        "MetricName": "valid_accuracy", "Type": "Maximize",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["best", "job"], "no AWS region"),
        (["delete", "ep"], "no AWS region"),
    ],
)
def test_missing_region_is_a_clear_error(cli, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert cli(*argv) == 2
    assert message in capsys.readouterr().err


def test_missing_credentials_is_a_clear_error(cli, capsys, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert cli("best", "job") == 2
    assert "no AWS credentials found" in capsys.readouterr().err


def test_missing_role_is_a_clear_error(aws, cli, capsys, tmp_path):
    aws.boto3("s3").create_bucket(Bucket="data-bucket")
    args = [
        "--image",
        "img:1",
        "--train",
        "s3://data-bucket/train/",
        "--valid",
        "s3://data-bucket/valid/",
    ]
    assert cli("train", *args) == 2
    assert "no SageMaker execution role: pass --role ARN or set SAGEMAKER_ROLE_ARN" in capsys.readouterr().err
    assert cli("train", *args, "--role", "not-an-arn") == 2
    assert "must be an IAM role ARN" in capsys.readouterr().err
    assert "CreateTrainingJob" not in aws.recorded.operations()


def test_cloud_training_refuses_local_folders(aws, cli, capsys, tmp_path):
    code = cli(
        "train",
        "--image",
        "img:1",
        "--role",
        aws.role_arn,
        "--train",
        tmp_path,
        "--valid",
        tmp_path,
    )
    assert code == 2
    assert "is a local path; SageMaker needs s3://" in capsys.readouterr().err


def test_tune_local_needs_local_data(cli, capsys):
    assert cli("tune", "--local") == 2
    assert "no training data" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, refused",
    [
        (["--spot"], "--spot: for SageMaker tuning jobs only"),
        (["--wait", "--instance-count", "2"], "--wait, --instance-count > 1: for SageMaker"),
        (["--output-s3-uri", "s3://b/out"], "--output-s3-uri: for SageMaker tuning jobs only"),
        (["--tensorboard-s3-uri", "s3://b/tb"], "--tensorboard-s3-uri: for SageMaker"),
        (["--tuning-job-name", "no_underscores"], "--tuning-job-name 'no_underscores': 1 to 32"),
    ],
)
def test_tune_local_refuses_what_only_sagemaker_tuning_does(
    cli, capsys, tiny_image_folder, tmp_path, options, refused
):
    data = tiny_image_folder(tmp_path / "data")
    assert cli("tune", "--local", "--data", data, "--local-dir", tmp_path / "runs", *options) == 2
    assert refused in capsys.readouterr().err


def test_our_rule_names_map_to_the_classes_in_the_custom_rule_source():
    tree = ast.parse(open(custom_rule_source_path()).read())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {rule_class_name(name) for name in RULE_NAMES} <= classes


def test_push_passes_options_to_build_and_push_and_returns_the_last_line(tmp_path):
    script = tmp_path / "build_and_push.sh"
    script.write_text(
        '#!/usr/bin/env bash\necho "building with: $*" >&2\n'
        'echo "some progress"\necho "127.0.0.1:5000/$2:$4"\n'
    )
    options = PushOptions(
        name="clf", tag="t1", registry="127.0.0.1:5000", base_image="deb:12", mutable_tags=True,
        repository_tags=(("team", "vision"),),
    )  # fmt: skip
    assert options.arguments() == [
        "--name", "clf", "--tag", "t1", "--registry", "127.0.0.1:5000", "--base-image", "deb:12",
        "--mutable-tags", "--repository-tag", "team=vision",
    ]  # fmt: skip
    assert push_image(options, script) == "127.0.0.1:5000/clf:t1"
    assert PushOptions(push=False, build=True).arguments()[-1] == "--no-push"
    assert "--tag" not in PushOptions().arguments(), "the script picks a unique tag for ECR"
    # The serving image goes to its own repository, NAME-serve, unless it is named so already.
    assert PushOptions(serve_only=True).arguments() == [
        "--name",
        "sagemaker-image-classifier-serve",
        "--serve-only",
    ]
    assert PushOptions(name="x-serve", serve_only=True).arguments()[:2] == ["--name", "x-serve"]


def test_push_failure_is_reported(tmp_path):
    from classifier_client.config import ConfigurationError

    script = tmp_path / "build_and_push.sh"
    script.write_text("#!/usr/bin/env bash\necho 'ERROR: no docker' >&2\nexit 3\n")
    with pytest.raises(ConfigurationError, match="exit code 3"):
        push_image(PushOptions(), script)


def test_local_training_refuses_sagemaker_only_options(cli, capsys, tiny_image_folder, tmp_path):
    data = tiny_image_folder(tmp_path / "data")
    code = cli("train", "--local", "--data", data, "--spot", "--debugger-rules", "all", "--wait")
    assert code == 2
    assert "--spot, --debugger-rules, --wait: for SageMaker jobs only" in capsys.readouterr().err
