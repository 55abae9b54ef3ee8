"""Schedules. (skeleton, issue 5 fills it)"""

SCHEDULES: list = []
