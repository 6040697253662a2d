"""The training job: read the SageMaker contract, train, checkpoint, write the model and reports.

``program.main`` is what ``docker run IMAGE train`` runs.
"""
