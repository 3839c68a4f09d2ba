"""Machine judges. `base` holds the interface and the registry; each other module registers
one family of backends when imported (torch and friends are imported inside their methods,
so listing backends never loads them)."""
import importlib

FAMILIES = ["mlworkers.backends.clip", "mlworkers.backends.openai_compat", "mlworkers.backends.mllm"]


def load_all() -> None:
    for module in FAMILIES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a family's own dependency is missing: say so
                raise
