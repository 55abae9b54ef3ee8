"""Log shipping: the template's compute_logs block sends a real run's logs to S3-compatible storage.

The storage is moto in server mode on 127.0.0.1; the block is taken from the project's own
``dagster.yaml`` template, uncommented, with only the endpoint and local folder changed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from aivj_assets.orchestration.instance import TEMPLATE
from aivj_assets_tests.processes import kill_tree, spawn

BUCKET = "aivj-logs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch):
    """moto's S3 server on a free loopback port, with a bucket; yields its URL."""
    port = _free_port()
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        import boto3

        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield url
    finally:
        kill_tree(proc)


def _template_with_log_shipping(endpoint: str, local_dir: Path) -> str:
    """The template with its documented compute_logs block uncommented and pointed at ``endpoint``."""
    out, in_block = [], False
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines():
        if line.startswith("# compute_logs:"):
            in_block = True
        if in_block and line.startswith("#"):
            line = line[2:]
            if line.strip().startswith("endpoint_url:"):
                line = f'    endpoint_url: "{endpoint}"'
            elif line.strip().startswith("local_dir:"):
                line = f'    local_dir: "{local_dir}"'
        elif in_block:
            in_block = False
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.timeout(300)
def test_a_runs_stdout_and_stderr_land_in_the_bucket(tmp_path: Path, s3_server: str, monkeypatch) -> None:
    import boto3

    from aivj_assets_tests.orchestration.log_shipping_job import STDERR_LINE, STDOUT_LINE, speaking_job

    home = tmp_path / "dagster_home"
    home.mkdir()
    text = _template_with_log_shipping(s3_server, tmp_path / "compute_logs")
    assert "S3ComputeLogManager" in text and "\n# compute_logs" not in text
    (home / "dagster.yaml").write_text(text)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    with dg.DagsterInstance.get() as instance:
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
        result = dg.execute_job(dg.reconstructable(speaking_job), instance=instance)
        assert result.success
        run_id = result.run_id

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    ours = [k for k in keys if run_id in k and k.startswith("dagster-logs/")]
    bodies = {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode() for k in ours}
    assert any(k.endswith(".out") and STDOUT_LINE in b for k, b in bodies.items()), keys
    assert any(k.endswith(".err") and STDERR_LINE in b for k, b in bodies.items()), keys
