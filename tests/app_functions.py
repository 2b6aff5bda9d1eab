"""The function app's functions, indexed once per process (get_functions() keeps state, so a second call
fails): the same index `serve` hands its requests to."""

from exporter.local.functions import registered

FUNCTIONS = {f.get_function_name(): f for f in registered()}
