"""Resources the Definitions carry. (skeleton, issue 5 fills it)"""


def build_resources() -> dict:
    """Resource instances keyed by name."""
    return {}
