"""Repository tooling that works inside a checkout (not installed with the package): the GPU suite
(``python -m tools.gpu_suite``, ``make test-gpu``) and the course deck builder (``python -m
tools.slides``, ``make slides``)."""
