"""kubetune_operator: the kopf operator that turns a FineTuneJob into an Indexed Job.

Layers (each imports only downward): ``builders`` and ``status``/``observe`` are pure
(spec + metadata -> dicts, old status + observation -> new status); ``k8s`` is the one
module that talks to the Kubernetes API; ``handlers`` wire them together; ``main`` is the
kopf routing table. Imports no torch/transformers/peft and not kubetune_trainer.
"""

from kubetune_api import __version__

DEFAULT_IMAGE_REPOSITORY = "ghcr.io/kubetune/trainer"
# The trainer image matching this operator: the pod contract (env, exit codes, termination
# message) is versioned with the operator, so the default image carries the same version.
DEFAULT_IMAGE = f"{DEFAULT_IMAGE_REPOSITORY}:{__version__}"

__all__ = ["DEFAULT_IMAGE", "DEFAULT_IMAGE_REPOSITORY", "__version__"]
