"""SageMaker Debugger inside the training job: the smdebug hook, the rules, the profiler, the report."""
