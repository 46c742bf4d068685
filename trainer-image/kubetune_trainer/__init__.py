"""kubetune_trainer: data preparation, training, evaluation and serving for FineTuneJobs.

Runs inside the trainer pod or locally under `kubetune run`. Imports neither kopf
nor kubernetes: the pod has no Kubernetes client.
"""

__version__ = "0.1.0"
