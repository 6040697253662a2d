"""Inference engines behind one interface, shared by serving and by training's export check.

``backends`` holds the engines (OpenVINO; PyTorch in ``torch_backend``), ``export`` writes the
exported forms next to ``model.pt`` and measures their parity, ``selection`` picks what a
server runs.
"""
