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
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests

from aivj_assets_tests.test_tour import SMALL_TRAINING
from aivj_assets_tests.test_up import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("AIVJ_CHROMIUM", "/usr/bin/chromium")
DESIGN_ASSETS = ["raw_pairs", "elite_set", "warmed_model", "full_model", "incremental_model", "promoted_model"]
SCREENSHOT_FOR_README = ROOT / "docs" / "ui-asset-graph.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0",
    "--window-size=1600,1000", "--hide-scrollbars",
]


class Chromium:
    """Headless Chromium and one page, driven over the DevTools protocol (a websocket)."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"  # Chromium writes its chosen port here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert self.proc.poll() is None, f"{CHROMIUM} exited with {self.proc.returncode}"
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
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


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


def start_webserver(port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", str(ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


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


@pytest.fixture
def small_pipeline(aivj_env, monkeypatch):
    """An instance that has run the whole tour (ingest, warm-up, full, promotion) on small data."""
    from aivj_assets.settings import load_settings
    from aivj_assets.tour import tour

    for key, value in SMALL_TRAINING.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    result = tour(settings, pairs=8000, elite=400, seed=0, out=lambda line: None)
    assert result.outcome == "promoted", result
    return settings, result


@pytest.mark.timeout(400)
def test_asset_graph_shows_every_design_asset_and_graphql_gives_the_gates(small_pipeline, tmp_path):
    settings, result = small_pipeline
    port = free_port()
    log = tmp_path / "webserver.log"
    server = start_webserver(port, log)
    browser = None
    try:
        wait_for("the webserver", lambda: server.poll() is None and answers(f"http://127.0.0.1:{port}/server_info")
                 or (server.poll() is not None and pytest.fail(log.read_text())), timeout=120)

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
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
