import pytest

from classifier.hyperparameter_schema import as_text
from classifier.training.hyperparameters import HyperparameterError, Hyperparameters, parse_hyperparameters


def test_empty_gives_documented_defaults():
    assert parse_hyperparameters({}) == Hyperparameters()


def test_string_values_are_parsed_to_types():
    hp = parse_hyperparameters(
        {
            "model": "efficientnet_b0",
            "epochs": "3",
            "batch_size": "64.0",
            "learning_rate": "1e-4",
            "precision": "BF16",
            "debug": "False",
            "optimizer": "AdamW",
            "lr_scheduler": "cosine",
        }
    )
    assert (hp.model, hp.epochs, hp.batch_size, hp.learning_rate) == ("efficientnet_b0", 3, 64, 1e-4)
    assert hp.precision == "bf16" and hp.debug is False and hp.optimizer == "adamw"


def test_sagemaker_keys_are_accepted():
    hp = parse_hyperparameters(
        {
            "sagemaker_program": "x",
            "sagemaker_region": '"us-east-1"',
            "_tuning_objective_metric": "valid_accuracy",
        }
    )
    assert hp == Hyperparameters()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("epochs", "0", "epochs='0' is invalid: must be an integer in [1, 10000]"),
        ("epochs", "2.5", "epochs='2.5' is invalid: must be an integer"),
        ("learning_rate", "0", "learning_rate='0' is invalid: must be a number in (0.0, 10.0]"),
        ("learning_rate", "fast", "learning_rate='fast' is invalid: must be a number"),
        ("optimizer", "lbfgs", "must be one of sgd, adam, adamw, rmsprop"),
        ("lr_scheduler", "onecycle", "must be one of none, step, cosine"),
        ("amp", "yes", "amp='yes' is invalid: must be true or false"),
        ("precision", "int8", "precision='int8' is invalid: must be one of auto, fp32, bf16, fp16"),
        ("model", "resnet19", "model='resnet19' is invalid: must be a torchvision classification model"),
        ("momentum", "1.5", "momentum='1.5' is invalid: must be a number in [0.0, 1.0]"),
    ],
)
def test_bad_value_names_key_and_allowed_values(key, value, expected):
    with pytest.raises(HyperparameterError) as error:
        parse_hyperparameters({key: value})
    assert expected in str(error.value)


def test_unknown_key_lists_allowed_keys_and_all_problems_are_reported_at_once():
    with pytest.raises(HyperparameterError) as error:
        parse_hyperparameters({"epoch": "3", "batch_size": "-1"})
    message = str(error.value)
    assert "unknown hyperparameter 'epoch'; allowed: amp," in message
    assert "batch_size='-1'" in message


def test_freeze_backbone_needs_pretrained():
    with pytest.raises(HyperparameterError, match="freeze_backbone=true needs pretrained=true"):
        parse_hyperparameters({"freeze_backbone": "true"})
    assert parse_hyperparameters({"freeze_backbone": "true", "pretrained": "true"}).freeze_backbone


def test_run_identity_leaves_out_what_does_not_change_the_computation():
    hp = parse_hyperparameters({"epochs": "3", "learning_rate": "0.01", "num_workers": "4"})
    identity = hp.run_identity()
    assert identity["learning_rate"] == 0.01
    assert {"model", "batch_size", "optimizer", "augmentation", "seed", "image_size"} <= set(identity)
    assert not {"epochs", "num_workers", "debug", "early_stopping_patience"} & set(identity)


def test_the_schema_lists_exactly_torchvisions_classifiers():
    """The client checks `model` without torchvision, against this copy of the registry."""
    from classifier.hyperparameter_schema import CLASSIFICATION_MODELS
    from classifier.models import classification_models

    assert sorted(CLASSIFICATION_MODELS) == classification_models()


@pytest.mark.parametrize(
    ("key", "kind", "values", "expected"),
    [
        ("learning_rate", "continuous", ("5", "50"), "bound '50' is invalid: must be a number in (0.0, 10"),
        ("batch_size", "categorical", ("0", "-1"), "value '0' is invalid: must be an integer in [1, 65536]"),
        ("epochs", "continuous", ("1", "10"), "epochs is integer, so its range must be integer or"),
        ("optimizer", "integer", ("1", "2"), "optimizer is choice, so its range must be categorical"),
        ("optimizer", "categorical", ("adam", "lbfgs"), "value 'lbfgs' is invalid: must be one of sgd,"),
        ("epoch", "integer", ("1", "2"), "unknown hyperparameter 'epoch'"),
    ],
)
def test_a_range_sagemaker_would_sample_bad_values_from_is_refused(key, kind, values, expected):
    from classifier.hyperparameter_schema import check_range

    problems = check_range(key, kind, values)
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith(f"--range {key}:") for problem in problems)


def test_ranges_within_the_schema_pass():
    from classifier.hyperparameter_schema import check_range

    assert check_range("learning_rate", "continuous", ("0.0001", "0.1")) == []
    assert check_range("epochs", "integer", ("2", "10")) == []
    assert check_range("augmentation", "categorical", ("light", "strong")) == []
    assert check_range("pretrained", "categorical", ("true", "false")) == []


def test_the_dataclass_and_the_schema_name_the_same_keys_with_the_same_defaults_and_kinds():
    from dataclasses import fields

    from classifier.hyperparameter_schema import ALIASES, SCHEMA, defaults

    attributes = {f.name: f for f in fields(Hyperparameters)}
    assert set(attributes) == set(SCHEMA), set(attributes) ^ set(SCHEMA)
    assert Hyperparameters().to_dict() == defaults()
    python_type = {"boolean": "bool", "integer": "int", "number": "float"}
    for key, spec in SCHEMA.items():
        # A choice among a vocabulary's members (PrecisionName) is typed as that vocabulary.
        expected = type(spec.choices[0]).__name__ if spec.kind == "choice" else python_type[spec.kind]
        assert attributes[key].type == expected, key
        # Every default passes its own field's check.
        assert spec.parse(as_text(spec.default)) == spec.default, key
    assert not set(ALIASES) & set(SCHEMA)
    assert all(alias.key in SCHEMA for alias in ALIASES.values())


def test_an_alias_arrives_under_its_key_and_is_refused_beside_it():
    assert parse_hyperparameters({"amp": "false"}).precision == "fp32"
    assert parse_hyperparameters({"amp": "TRUE"}).precision == "auto"
    with pytest.raises(HyperparameterError, match="amp and precision both given"):
        parse_hyperparameters({"amp": "true", "precision": "bf16"})
