"""Model stages. (skeleton, issue 4 fills it)"""

MODEL_ASSETS: list = []
