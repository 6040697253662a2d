"""SageMaker Debugger (smdebug) hook wiring.

On SageMaker, the service writes ``debughookconfig.json`` and the hook is built from it
(collections, save intervals, S3-synced LocalPath). Elsewhere (``docker run``, local
mode) the ``debug`` hyperparameter switches on the same hook with a local out_dir.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from classifier.debugger_contract import (
    EVERY_STEP_COLLECTIONS,
    LABELS_COLLECTION,
    PREDICTIONS_COLLECTION,
    REDUCTIONS,
    RELU_INPUT_COLLECTION,
    TENSOR_SAVE_INTERVAL,
    hook_collections,
)

logger = logging.getLogger(__name__)


class DebuggerConfigError(RuntimeError):
    """debughookconfig.json exists but smdebug cannot build a hook from it."""


def _import_smdebug() -> Any:
    # smdebug logs about profiler config on import; keep that out of module import.
    import smdebug.pytorch as smd

    return smd


# The inputs and outputs of one module that a collection's names are checked against (a module
# with more is still hooked when any of its first ones is named).
TENSORS_PER_MODULE = 16


@functools.cache
def _fp32_hook_class():
    """smdebug's PyTorch hook, saving every floating tensor in fp32, and hooking only the
    modules whose tensors a collection saves.

    Under bf16 or fp16 autocast (classifier.training.precision) the activations the hook sees
    are low precision: numpy has no bf16 (smdebug 1.0.34 fails with "unsupported ScalarType
    BFloat16"), and reductions (std, mean) would keep only 3 significant digits. The tensors a
    rule reads are those an fp32 job would save. ``create_from_json_file`` is a classmethod
    building ``cls``, so SageMaker's debughookconfig.json builds this class too.
    """
    import torch

    hook_class: Any = _import_smdebug().Hook
    low_precision = (torch.bfloat16, torch.float16)

    class Fp32Hook(hook_class):
        def _save_for_tensor(self, tensor_name, tensor_value, check_before_write=True):
            if isinstance(tensor_value, torch.Tensor) and tensor_value.dtype in low_precision:
                # smdebug hands every module's inputs and outputs here on every step and then
                # keeps the few its collections save at this step: converting them all first
                # cost a full fp32 copy of every activation per step (14 ms of a 210 ms bf16
                # step of ResNet-18 at 64 px, batch 64). Convert only what will be written.
                if check_before_write and not self._will_save(tensor_name):
                    return None
                tensor_value = tensor_value.float()
            return super()._save_for_tensor(tensor_name, tensor_value, check_before_write)

        def _will_save(self, tensor_name) -> bool:
            # The test smdebug's own _save_for_tensor makes first (smdebug 1.0.34).
            collections = self._get_collections_with_tensor(tensor_name)
            return bool(collections & self._get_collections_to_save_for_step())

        def _closure_for_registering_forward_hook(self, module):
            # smdebug puts its forward hook on every module, and on every step that saves
            # anything (the loss: every step) each one walks its inputs and outputs: 77 Python
            # calls a step for ResNet-18, for the ReLU inputs alone. A module none of whose
            # tensors a collection can name gets none, unless smdebug's own framework profiler
            # (a ProfilerConfig with ProfilingParameters, as `sm-classifier train` sends by
            # default) times every module for its timeline. (smdebug 1.0.34 registers through
            # this method, after naming the modules; tests/unit/debugger/test_hook_saves.py pins it.)
            if self.profiler_config_parser.profiling_enabled or self._names_tensors_of(module):
                super()._closure_for_registering_forward_hook(module)

        def _names_tensors_of(self, module) -> bool:
            from smdebug.core.utils import match_inc

            # smdebug names a module's tensors <module>_input_<i> and <module>_output_<i>.
            names = [
                f"{module._module_name}_{kind}_{i}"
                for kind in ("input", "output")
                for i in range(TENSORS_PER_MODULE)
            ]
            return any(
                module in collection.modules
                or any(
                    name in collection.tensor_names or match_inc(name, collection.include_regex)
                    for name in names
                )
                for collection in self.collection_manager.collections.values()
            )

    return Fp32Hook


def create_hook(config_file: Path, debug: bool, out_dir: Path):
    """The hook SageMaker asked for, or the local one ``debug`` asks for, or None."""
    if config_file.exists():
        try:
            json.loads(config_file.read_text())
            hook = _fp32_hook_class().create_from_json_file(str(config_file))
        except (ValueError, KeyError, TypeError) as error:
            raise DebuggerConfigError(f"cannot build the smdebug hook from {config_file}: {error}") from error
        logger.info("smdebug hook from %s, tensors to %s", config_file, hook.out_dir)
        return hook
    if not debug:
        return None
    # Collections and save intervals come from configure_hook (see attach).
    hook = _fp32_hook_class()(out_dir=str(out_dir), export_tensorboard=False, include_collections=[])
    logger.info("smdebug hook from debug=true, tensors to %s", out_dir)
    return hook


def attach(hook, model, loss_fn, from_sagemaker_config: bool) -> None:
    """Make the hook save what the rules read, then register the module and the loss.

    A hook SageMaker configured keeps the job's own save intervals; the local ``debug``
    hook gets this project's defaults (``hook_collections``).
    """
    if hook is None:
        return
    configure_hook(hook, model, apply_defaults=not from_sagemaker_config)
    hook.register_module(model)
    hook.register_loss(loss_fn)


def set_mode(hook, train: bool) -> None:
    if hook is None:
        return
    smd = _import_smdebug()
    hook.set_mode(smd.modes.TRAIN if train else smd.modes.EVAL)


def close(hook) -> None:
    """Flush the last saved steps so the rules see every tensor."""
    if hook is not None:
        hook.close()


# --- what the hook saves so that classifier.debugging.rules can judge the run ----------------------
#
#   configure_hook(hook, model, apply_defaults)  after create_hook, before register_module;
#   record_batch(hook, labels, logits, last)     every train step, after the model's forward
#                                                and BEFORE the loss forward (the loss
#                                                module's forward hook writes them into
#                                                the same step).

# Labels and predictions are buffered and saved together every this many train steps.
BATCHES_PER_SAVE = 8


def _save_config(smd, parameters: dict[str, str]):
    """SaveConfig from CollectionParameters (plain or ``train.``/``eval.`` prefixed keys)."""
    from smdebug.core.save_config import SaveConfigMode

    def mode_config(prefix: str):
        interval = parameters.get(f"{prefix}save_interval")
        steps = parameters.get(f"{prefix}save_steps", "")
        end_step = parameters.get(f"{prefix}end_step")
        if interval is None and not steps and end_step is None:
            return None
        return SaveConfigMode(
            save_interval=int(interval or TENSOR_SAVE_INTERVAL),
            save_steps=[int(step) for step in steps.split(",") if step] or None,
            end_step=None if end_step is None else int(end_step),
        )

    default = mode_config("")
    modes = {mode: mode_config(f"{mode.name.lower()}.") or default for mode in smd.modes}
    return smd.SaveConfig(mode_save_configs={m: c for m, c in modes.items() if c is not None})


def configure_hook(hook, model, apply_defaults: bool = True, **kwargs) -> None:
    """Make ``hook`` save what the rules need; call before ``hook.register_module(model)``.

    The labels/predictions collections and the ReLU input tensors always exist (smdebug
    crashes on ``save_tensor`` into a collection created after the first step). With
    ``apply_defaults`` (the local ``debug=true`` hook) the save intervals and reductions of
    ``hook_collections`` are applied; a hook built from SageMaker's debughookconfig.json
    keeps the intervals the job asked for.
    """
    if hook is None:
        return
    smd = _import_smdebug()
    from smdebug.core.reduction_config import ReductionConfig
    from torch import nn

    for name in (LABELS_COLLECTION, PREDICTIONS_COLLECTION):
        hook.get_collection(name).add_tensor_name(name)
    relu_inputs = hook.get_collection(RELU_INPUT_COLLECTION)
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            relu_inputs.add_module_tensors(module, inputs=True, outputs=False)
    for name in (*EVERY_STEP_COLLECTIONS, RELU_INPUT_COLLECTION):
        if name not in hook.include_collections:
            hook.include_collections.append(name)
    if not apply_defaults:
        return
    for name, parameters in hook_collections(**kwargs).items():
        collection = hook.get_collection(name)
        collection.save_config = _save_config(smd, parameters)
        if name in REDUCTIONS:
            reductions, abs_reductions, save_shape = REDUCTIONS[name]
            collection.reduction_config = ReductionConfig(
                reductions=list(reductions), abs_reductions=list(abs_reductions), save_shape=save_shape
            )
        if name not in hook.include_collections:
            hook.include_collections.append(name)


def record_batch(hook, labels, logits, last_of_epoch: bool = False) -> None:
    """Queue this batch's labels and predicted classes for the class_imbalance rule.

    Batches are buffered and saved as one labels and one predictions tensor every
    BATCHES_PER_SAVE steps and at the end of each epoch (``last_of_epoch``): the rule counts
    samples, so it judges the same sequence, and the job writes 2 values every
    BATCHES_PER_SAVE steps instead of 2 every step. smdebug writes queued tensors from the
    next module forward hook; calling this between the model forward and the loss forward
    puts them into the current step and mode.
    """
    if hook is None:
        return
    # The buffer lives with the hook: one job, one hook, one buffer.
    pending = hook.__dict__.setdefault("_classifier_pending_batches", [])
    pending.append((labels.detach(), logits.detach().argmax(dim=1)))
    if len(pending) < BATCHES_PER_SAVE and not last_of_epoch:
        return
    for name in (LABELS_COLLECTION, PREDICTIONS_COLLECTION):
        collection = hook.get_collection(name)
        if collection.reduction_config is None:
            # configure_hook was not called before the first step: smdebug would crash
            # writing into a collection without a reduction config.
            from smdebug.core.reduction_config import ReductionConfig

            collection.add_tensor_name(name)
            collection.reduction_config = ReductionConfig(save_raw_tensor=True)
    import torch

    hook.save_tensor(LABELS_COLLECTION, torch.cat([b[0] for b in pending]), LABELS_COLLECTION)
    hook.save_tensor(PREDICTIONS_COLLECTION, torch.cat([b[1] for b in pending]), PREDICTIONS_COLLECTION)
    pending.clear()
