"""inferfleet: size, run and scale vLLM inference fleets on Kubernetes GPU node pools."""

__version__ = "0.1.0"
