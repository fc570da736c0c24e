"""Data stages: sources, validation, windowing, text batching. ``collate_fn`` (torch) is loaded on first use, so the
data stages start without torch."""


def __getattr__(name: str):
    if name == "collate_fn":
        from .batching import collate_fn

        globals()[name] = collate_fn
        return collate_fn
    raise AttributeError(f"module 'r2n2.data' has no attribute {name!r}")
