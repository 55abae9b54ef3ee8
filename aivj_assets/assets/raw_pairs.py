"""raw_pairs: one dynamic partition per ingested data file. (skeleton, issue 2 fills it)"""

import dagster as dg

data_files = dg.DynamicPartitionsDefinition(name="data_files")


@dg.asset(partitions_def=data_files, group_name="data")
def raw_pairs() -> None:
    raise NotImplementedError("raw_pairs is built by the foundation issue")


RAW_PAIRS_CHECKS: list = []
