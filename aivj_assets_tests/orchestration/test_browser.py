"""The owner's view in a real browser: the Dagster UI on an instance that has run the pipeline.

The tour runs on small data into a temporary instance; the real ``dagster-webserver`` serves
it on a free loopback port; Debian's headless Chromium, driven over the DevTools protocol,
loads the global asset graph, and every asset of DESIGN must be drawn in it. The webserver's
GraphQL API must give the latest gate results of the candidate ``full_model``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests

from aivj_assets_tests.cli.test_tour import SMALL_TRAINING
from aivj_assets_tests.loopback import free_port
from aivj_assets_tests.processes import kill_tree, spawn

ROOT = Path(__file__).resolve().parents[2]
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome", "msedge")
DESIGN_ASSETS = ["raw_pairs", "elite_set", "warmed_model", "full_model", "incremental_model", "promoted_model"]
SCREENSHOT_FOR_README = ROOT / "docs" / "ui-asset-graph.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0",
    "--window-size=1600,1000", "--hide-scrollbars",
]


def find_chromium() -> str:
    """The browser to drive: ``AIVJ_CHROMIUM``, else the first Chromium-based browser on PATH."""
    named = os.environ.get("AIVJ_CHROMIUM")
    if named:
        return named
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"no Chromium-based browser on PATH (looked for {', '.join(BROWSER_NAMES)}): run "
                f"`make browser`, or set AIVJ_CHROMIUM to the browser's path")


class Chromium:
    """Headless Chromium and one page, driven over the DevTools protocol (a websocket)."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        chromium = find_chromium()
        self.proc = spawn([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"  # Chromium writes its chosen port here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert self.proc.poll() is None, f"{chromium} exited with {self.proc.returncode}"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.2)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30))
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events arriving meanwhile are skipped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            kill_tree(self.proc)


# Names drawn inside the graph's SVG (asset nodes and group boxes), not the sidebar list.
GRAPH_TEXT_JS = r"""[...document.querySelectorAll('svg foreignObject *')]
  .filter(e => e.children.length === 0).map(e => e.textContent.trim()).filter(t => t)"""


# Clicks the first collapsed group box in the graph; true if there was one.
CLICK_COLLAPSED_GROUP_JS = r"""(() => { const box = document.querySelector('[class*=CollapsedGroupNode_collapsedGroupNodeBox]');
  if (box) { box.click(); } return !!box; })()"""
DISMISS_JS = r"""[...document.querySelectorAll('button')].filter(b => b.textContent.trim() === 'Skip')
  .map(b => b.click()).length"""


def graph_text(browser: Chromium) -> set[str]:
    return set(browser.js(GRAPH_TEXT_JS) or [])


def wait_for(what: str, predicate, timeout: float = 90.0, every: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


CHECKS_QUERY = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      groupName
      kinds
      owners { __typename ... on UserAssetOwner { email } ... on TeamAssetOwner { team } }
      description
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            blocking
            executionForLatestMaterialization {
              runId
              status
              evaluation { success severity metadataEntries { label __typename } }
            }
          }
        }
      }
    }
  }
}
"""


def graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables},
                         timeout=60)
    resp.raise_for_status()
    body = resp.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture(scope="module")
def platform_ui(tmp_path_factory):
    """The tour run on small data into a fresh tree, then ``aivj up`` (webserver and daemon) on it.

    Module-scoped: both tests look at the same instance, which is costly to build.
    """
    from aivj_assets.cli.tour import tour
    from aivj_assets.settings import load_settings

    root = tmp_path_factory.mktemp("platform")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("AIVJ_", "TELEGRAM_"))]:
            mp.delenv(key)
        env = {"AIVJ_HOME": root / "home", "AIVJ_DATA_DIR": root / "data", "DAGSTER_HOME": root / "dagster_home",
               "AIVJ_ENV_FILE": root / "no.env", "AIVJ_SETTLE_SECONDS": "0", **SMALL_TRAINING}
        for key, value in env.items():
            mp.setenv(key, str(value))
        settings = load_settings()
        result = tour(settings, pairs=8000, elite=400, seed=0, out=lambda line: None)
        assert result.outcome == "promoted", result

        port = free_port()
        log = root / "up.log"
        up = spawn([sys.executable, "-m", "aivj_assets", "up", "--port", str(port)], cwd=ROOT,
                   stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            def ready() -> bool:
                if up.poll() is not None:
                    pytest.fail(f"aivj up exited {up.returncode}:\n{log.read_text()}")
                return answers(f"http://127.0.0.1:{port}/server_info")

            wait_for("the webserver", ready, timeout=120)
            yield settings, result, port
        finally:
            kill_tree(up)  # the webserver, the daemon and any run they launched


@pytest.mark.timeout(400)
def test_asset_graph_shows_every_design_asset_and_graphql_gives_the_gates(platform_ui, tmp_path):
    settings, result, port = platform_ui
    browser = None
    try:
        # GraphQL: the candidate's gates, as the UI's check tab shows them.
        node = graphql(port, CHECKS_QUERY, {"key": {"path": ["full_model"]}})["assetNodeOrError"]
        assert node["__typename"] == "AssetNode", node
        assert node["groupName"] == "models" and "pytorch" in node["kinds"] and node["description"]
        assert node["owners"], "model assets carry an owner"
        checks = node["assetChecksOrError"]["checks"]
        assert checks, node
        blocking = [c for c in checks if c["blocking"]]
        assert blocking, checks
        for check in checks:
            execution = check["executionForLatestMaterialization"]
            assert execution is not None, f"check {check['name']} has no result"
            assert execution["runId"] == result.run_id
            assert execution["evaluation"]["metadataEntries"], f"check {check['name']} has no metadata"
        assert all(c["executionForLatestMaterialization"]["status"] == "SUCCEEDED" for c in blocking), checks

        # The browser: every DESIGN asset drawn in the one lineage graph, grouped (data, models).
        profile = tmp_path / "chromium-profile"
        profile.mkdir()
        browser = Chromium(profile)
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/asset-groups")
        wait_for("the two asset groups", lambda: {"data", "models"} <= graph_text(browser))
        # With several groups the UI starts collapsed: open each as the owner would (one click
        # each; the UI remembers it), then reload so that the graph is laid out to fit.
        for _ in range(5):
            if not browser.js(CLICK_COLLAPSED_GROUP_JS):
                break
            time.sleep(1.0)
        browser.call("Page.reload")
        drawn = wait_for("every DESIGN asset in the graph",
                         lambda: (lambda names: names if set(DESIGN_ASSETS) <= names else None)(graph_text(browser)))
        assert {"data", "models"} <= drawn, drawn
        browser.js(DISMISS_JS)  # a "join the community" pop-up may cover the graph
        time.sleep(1.0)
        shot = tmp_path / "asset-graph.png"
        browser.screenshot(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        # The README's picture: written when missing, refreshed on request (not on every run,
        # so that tests leave the source tree as they found it).
        if not SCREENSHOT_FOR_README.exists() or os.environ.get("AIVJ_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT_FOR_README.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT_FOR_README)
    finally:
        if browser is not None:
            browser.close()


# The mutations the UI sends: "Materialize selected" on raw_pairs partitions, and "Launch run"
# in the rollback job's launchpad.
BACKFILL_MUTATION = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
LAUNCH_RUN_MUTATION = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""


def wait_run(instance, run_id: str, timeout: float = 180.0):
    """The run once it has finished (the daemon dequeues and launches it)."""
    import dagster as dg

    def finished():
        run = instance.get_run_by_id(run_id)
        return run if run is not None and run.is_finished else None

    run = wait_for(f"run {run_id}", finished, timeout=timeout, every=1.0)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    return run


@pytest.mark.timeout(400)
def test_a_raw_pairs_backfill_and_the_rollback_job_launched_through_the_webserver_run(platform_ui):
    import dagster as dg

    from aivj_assets.data.store import Store
    from aivj_assets.registry import Registry

    settings, result, port = platform_ui
    registry = Registry(settings.models_dir)
    first = registry.champion()
    # A later champion (the same weights, registered again), so that there is one to roll back from.
    second = registry.register(registry.weights_path(first["version"]), {"stage": "full", "metrics": first["metrics"]})
    registry.promote(second, by="test")
    key = Store(settings).partitions()[0]

    with dg.DagsterInstance.get() as instance:
        def partition_materialisations() -> int:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_pairs"), asset_partitions=[key]), limit=100)
            return len(records.records)

        before = partition_materialisations()
        backfill = graphql(port, BACKFILL_MUTATION, {"params": {
            "assetSelection": [{"path": ["raw_pairs"]}], "partitionNames": [key], "fromFailure": False,
        }})["launchPartitionBackfill"]
        assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
        launched = graphql(port, LAUNCH_RUN_MUTATION, {"params": {
            "selector": {"repositoryLocationName": "aivj_assets", "repositoryName": "__repository__",
                         "jobName": "rollback"},
            "runConfigData": {"ops": {"rollback_champion": {"config": {"version": ""}}}},
            "mode": "default",
        }})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched

        # The rollback: the previous champion is back, and the run says so.
        wait_run(instance, launched["run"]["runId"])
        assert registry.champion()["version"] == first["version"]
        assert registry.get(second)["status"] == "rolled_back"

        # The backfill: the daemon launches one run for the partition; raw_pairs[key] is re-ingested.
        backfill_id = backfill["backfillId"]
        runs = wait_for("the backfill's run", lambda: instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})), timeout=180, every=1.0)
        assert len(runs) == 1 and runs[0].tags.get("dagster/partition") == key
        wait_run(instance, runs[0].run_id)
        assert partition_materialisations() == before + 1
        assert Store(settings).partitions()[0] == key
