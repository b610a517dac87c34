"""What a checkpoint of the single-class ``VersionMonitor`` and of a ``ModelMonitor`` holding its join
(before issue 13 split them) held, built from a current monitor: tests take attributes out of
it to fake older checkpoints."""
from detectors.monitor_state import FLAT_NAMES, JOIN_NAMES, PARTS

_BACK = {where: name for name, where in FLAT_NAMES.items()}


def flat_state(version) -> dict:
    """``version``'s state in the single-class layout (a copy of the top level, as ``__dict__.copy()`` was)."""
    state = {name: value for name, value in version.__dict__.items() if name not in PARTS}
    for part in PARTS:
        for attr, value in getattr(version, part).__dict__.items():
            name = _BACK.get((part, attr))
            if name is not None:
                state[name] = value
    return state


def flat_model_state(model) -> dict:
    """``model``'s state with the join's attributes on the model, as ``__dict__.copy()`` was."""
    state = {name: value for name, value in model.__dict__.items() if name != "join"}
    state.update({old: getattr(model.join, new) for old, new in JOIN_NAMES.items()})
    return state
