"""A job that writes to stdout and stderr, for the log-shipping test (a module so it is reconstructable)."""

import sys

import dagster as dg

STDOUT_LINE = "aivj log shipping: hello from stdout"
STDERR_LINE = "aivj log shipping: hello from stderr"


@dg.op
def speak() -> None:
    print(STDOUT_LINE, flush=True)
    print(STDERR_LINE, file=sys.stderr, flush=True)


@dg.job
def speaking_job() -> None:
    speak()
