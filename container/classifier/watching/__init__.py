"""Watching a training job while it runs, beside the Debugger: TensorBoard event files and MLflow runs.

``base`` holds the interface every watcher implements and :class:`~base.Watchers`, which the
training program calls; ``tensorboard`` and ``mlflow_tracking`` are the two watchers;
``figures`` draws what both show at the end (confusion matrix, worst mispredictions).
"""
