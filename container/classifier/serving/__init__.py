"""The model server: gunicorn + Flask at /ping, /invocations and /execution-parameters.

``config`` reads the environment once, ``predictor`` turns bytes into top-k classes,
``batching`` gathers concurrent requests into one forward pass, ``app`` is the Flask
factory, ``gunicorn_app`` lays out workers and ``serve.main`` is what ``./serve`` runs.
"""
