"""Every environment variable and path name the image reads, in one place."""

from enum import StrEnum

# Root of the SageMaker tree; the sagemaker-training convention for running outside /opt/ml.
BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"

# Paths relative to the base dir.
HYPERPARAMETERS_FILE = "input/config/hyperparameters.json"
INPUT_DATA_CONFIG_FILE = "input/config/inputdataconfig.json"
RESOURCE_CONFIG_FILE = "input/config/resourceconfig.json"
DEBUGHOOK_CONFIG_FILE = "input/config/debughookconfig.json"
PROFILER_CONFIG_FILE = "input/config/profilerconfig.json"
# Set by SageMaker in every training container.
TRAINING_JOB_NAME_ENV = "TRAINING_JOB_NAME"
# Watching a job (classifier.watching): MLflow's own variable names where it has them.
MLFLOW_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
MLFLOW_PARENT_RUN_ENV = "CLASSIFIER_MLFLOW_PARENT_RUN_ID"
MLFLOW_REGISTER_MODEL_ENV = "CLASSIFIER_MLFLOW_REGISTER_MODEL"
# Set by the client: the tuning job of a trial and the image a job runs. A job's environment
# may also name the folder of its TensorBoard files (else see TrainingEnvironment.tensorboard_dir).
TUNING_JOB_NAME_ENV = "CLASSIFIER_TUNING_JOB_NAME"
IMAGE_URI_ENV = "CLASSIFIER_IMAGE_URI"
TENSORBOARD_DIR_ENV = "CLASSIFIER_TENSORBOARD_DIR"
# "off": no TensorBoard event files (they are written by default).
TENSORBOARD_ENV = "CLASSIFIER_TENSORBOARD"
TENSORBOARD_CONFIG_FILE = "input/config/tensorboardoutputconfig.json"
TENSORBOARD_DIR = "output/tensorboard"
# Written when the job has a CheckpointConfig; its LocalPath replaces CHECKPOINT_DIR.
CHECKPOINT_CONFIG_FILE = "input/config/checkpointconfig.json"
INPUT_DATA_DIR = "input/data"
MODEL_DIR = "model"
OUTPUT_DIR = "output"
OUTPUT_DATA_DIR = "output/data"
FAILURE_FILE = "output/failure"
CHECKPOINT_DIR = "checkpoints"
TENSORS_DIR = "output/tensors"
# The same folders inside the training container, where the client's requests point SageMaker:
# the Debugger hook's LocalPath (synced to S3) and CheckpointConfig's LocalPath.
HOOK_LOCAL_PATH = f"{DEFAULT_BASE_DIR}/{TENSORS_DIR}"
CHECKPOINT_LOCAL_PATH = f"{DEFAULT_BASE_DIR}/{CHECKPOINT_DIR}"

# Hyperparameter keys SageMaker itself adds to hyperparameters.json: the SDK's own settings
# (``sagemaker_program``, ``sagemaker_region``...) and, in every training job a tuning job
# starts, the tuning objective. They are not ours to validate, nor to copy into a new job.
SAGEMAKER_KEY_PREFIX = "sagemaker_"
TUNING_OBJECTIVE_KEY = "_tuning_objective_metric"
SAGEMAKER_KEYS = (TUNING_OBJECTIVE_KEY,)
# The training program's exit code after SIGTERM (128 + 15, as a shell reports it): SageMaker's
# StopTrainingJob, a spot interruption, or a pruned local trial.
EXIT_SIGTERM = 143


def is_sagemaker_key(key: str) -> bool:
    return key.startswith(SAGEMAKER_KEY_PREFIX) or key in SAGEMAKER_KEYS


# Training channels.
TRAIN_CHANNEL = "train"
VALID_CHANNELS = ("valid", "validation")
TEST_CHANNEL = "test"
PRETRAINED_CHANNEL = "pretrained"

# Distributed training overrides (torch's own names win when set).
MASTER_ADDR_ENV = "MASTER_ADDR"
MASTER_PORT_ENV = "MASTER_PORT"
DEFAULT_MASTER_PORT = 29500
# Processes per host; defaults to the number of GPUs, or 1 on CPU.
PROCESSES_PER_HOST_ENV = "SM_PROCESSES_PER_HOST"

# Serving (names shared with the official SageMaker toolkits).
BIND_TO_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_PORT = 8080
MODEL_SERVER_WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
MODEL_SERVER_TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
MAX_PAYLOAD_IN_MB_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
# CreateTransformJob, MaxPayloadInMB: "The default value is 6 MB"; InvokeEndpoint's limit too.
DEFAULT_MAX_PAYLOAD_MB = 6
BATCH_STRATEGY_ENV = "SAGEMAKER_BATCH_STRATEGY"
# "true" on a multi-model endpoint (Mode=MultiModel): models come and go through POST /models.
MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"

# Serving: this image's own tuning knobs (no SageMaker toolkit defines these names).
SERVING_WORKER_THREADS_ENV = "CLASSIFIER_WORKER_THREADS"  # request threads per gunicorn worker
SERVING_TORCH_THREADS_ENV = "CLASSIFIER_TORCH_THREADS"  # fixed intra-op threads (else adaptive)
SERVING_MAX_BATCH_SIZE_ENV = "CLASSIFIER_MAX_BATCH_SIZE"  # micro-batching; 1 switches it off
SERVING_MAX_BATCH_DELAY_MS_ENV = "CLASSIFIER_MAX_BATCH_DELAY_MS"
SERVING_MAX_IMAGE_PIXELS_ENV = "CLASSIFIER_MAX_IMAGE_PIXELS"  # decompression-bomb limit
SERVING_MAX_CONCURRENT_DECODES_ENV = "CLASSIFIER_MAX_CONCURRENT_DECODES"  # per worker
SERVING_DEVICE_ENV = "CLASSIFIER_DEVICE"  # "cpu" or "cuda"; default: cuda when present
SERVING_LOG_LEVEL_ENV = "CLASSIFIER_LOG_LEVEL"
# The most workers a CPU server starts unless told otherwise, one per core up to this: each holds
# a copy of the model, and beyond a few workers intra-op threads use the extra cores better than
# more copies do. The client sizes a transform's MaxConcurrentTransforms by it.
MAX_DEFAULT_CPU_WORKERS = 4
# Inference engine: auto (measured fastest installed), torch or openvino.
# Set to "serve" in the serving image (container/Dockerfile's serve stage): no torch, no training.
IMAGE_KIND_ENV = "CLASSIFIER_IMAGE_KIND"
SERVING_IMAGE_KIND = "serve"
FULL_IMAGE_NAME = "sagemaker-image-classifier"
INFERENCE_BACKEND_ENV = "CLASSIFIER_INFERENCE_BACKEND"
INFERENCE_BACKENDS = ("auto", "torch", "openvino")
# auto (int8, else bf16, where the recorded parity allows it), fp32, bf16 or int8.
INFERENCE_PRECISION_ENV = "CLASSIFIER_INFERENCE_PRECISION"


class PrecisionName(StrEnum):
    """What a forward pass computes in, by the one spelling that hyperparameters, environment
    variables, model files and metrics share. Training picks among ``TRAINING_PRECISIONS``,
    serving among ``INFERENCE_PRECISIONS``."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"


TRAINING_PRECISIONS = (PrecisionName.AUTO, PrecisionName.FP32, PrecisionName.BF16, PrecisionName.FP16)
INFERENCE_PRECISIONS = (PrecisionName.AUTO, PrecisionName.FP32, PrecisionName.BF16, PrecisionName.INT8)
# Multi-model endpoints: the resident memory (MB) the serving process may reach by loading
# models; a load beyond it is refused with 507. Default: 80 % of the container's limit.
MULTI_MODEL_MEMORY_MB_ENV = "CLASSIFIER_MULTI_MODEL_MEMORY_MB"
SERVING_BIND_HOST_ENV = "CLASSIFIER_BIND_HOST"  # 0.0.0.0 for SageMaker; tests use 127.0.0.1
# prometheus-client's own name: where every worker writes its metrics (default: a temp dir).
PROMETHEUS_MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Model directory contract between training and serving.
MODEL_WEIGHTS_FILE = "model.pt"
MODEL_CONFIG_FILE = "model_config.json"
MODEL_ARCHIVE_FILE = "model.tar.gz"
