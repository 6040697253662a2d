"""The laptop/notebook side of the image: upload data, push the image, tune, train with
Debugger, deploy, invoke and delete, on SageMaker or in SDK local mode.

Runs in the SDK environment (``.venv-sdk``: sagemaker 3.x, boto3). It never imports torch
or smdebug; the only runtime modules it uses (``classifier.metric_definitions``,
``classifier.debugging.hook``, ``classifier.constants``, ``classifier.archives``,
``classifier.redaction``) are import-light by design. A regulated account's settings (VPC, KMS,
isolation, tags) come from ``account_settings`` (docs/security.md).
"""
