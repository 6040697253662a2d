"""Runtime package of the image: training, debugger, serving.

Importing this package must stay cheap (no torch): the client imports
``classifier.metric_definitions`` from an environment without torch.
"""
