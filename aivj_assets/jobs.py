"""Jobs. (skeleton, issue 4 fills it)"""

JOBS: list = []
