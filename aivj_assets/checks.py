"""Quality gates as asset checks. (skeleton, issue 4 adds the model gates)"""

from aivj_assets.assets.raw_pairs import RAW_PAIRS_CHECKS

CHECKS = [*RAW_PAIRS_CHECKS]
