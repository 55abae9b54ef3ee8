"""Operations sensors: resource_watch, telegram_commands, run failures. (skeleton, issue 5)"""

OPS_SENSORS: list = []
