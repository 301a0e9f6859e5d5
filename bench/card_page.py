"""The agent's card page in Chromium: its weight and how fast a warm card renders.

    python -m bench.card_page [--loads 30]

`connector serve` (2 workers) in front of a `connector sandbox` with the demo data; Debian's
Chromium (`sudo apt-get install -y chromium`) opens `/cards/view#from=...&Token=...` as Flex's
CRM container does, once to warm the card, then `--loads` times more. For each load: the bytes
transferred (the shell, its script, the card's POST: Resource Timing's transferSize, headers
included), the time from the card's response to the card on screen (the script parsing and
inserting the fragment, localizing its times, wiring its tabs: a MutationObserver notes when
the name is in place), and the whole load from navigation to the card.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import sync_playwright

from bench.common import percentiles, table
from connector.sandbox.control_client import SandboxControl
from connector.sandbox.core import SandboxConfig
from connector.sandbox.process import sandbox_process
from connector.serving.processes import served_process

SPACE, TOKEN = "spa_sandbox", "bench-token"
SANDBOX = SandboxConfig()
DEMO = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
CALLER = "+14155550123"
# Notes the moment the card's name replaces "Looking up…" (the script's last step is the DOM).
RENDER_WATCH = """
new MutationObserver(() => {
  const name = document.querySelector("#card article:not([aria-busy]) #name");
  if (name && !window.__rendered && name.textContent === "Ada Lovelace") {
    window.__rendered = performance.now();
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""
MEASURE = """() => {
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  const post = performance.getEntriesByType("resource").find((e) => e.initiatorType === "fetch");
  return {
    bytes: entries.reduce((sum, e) => sum + e.transferSize, 0),
    body_bytes: entries.reduce((sum, e) => sum + e.encodedBodySize, 0),
    after_response: window.__rendered - post.responseEnd,
    whole: window.__rendered,
  };
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=30)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium: sudo apt-get install -y chromium")
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process("--data", "demo", "--space-id", SPACE, "--token", TOKEN) as sandbox,
    ):
        control = SandboxControl(sandbox.url)
        config = Path(tmp) / "connection.toml"
        text = DEMO.read_text(encoding="utf-8").replace("http://127.0.0.1:8087", sandbox.url)
        # Write-back off: the page is measured, not the outbox.
        config.write_text(text.replace("enabled = true", "enabled = false"), encoding="utf-8")
        env = {"SEGMENT_PROFILE_API_TOKEN": TOKEN, **SANDBOX.twilio_environment(sandbox.url)}
        agent = control.issue_agent_token()["token"]
        with served_process(config, env, workers=2) as served, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 400, "height": 900})
            context.add_init_script(RENDER_WATCH)
            url = f"{served.url}/cards/view#from={quote(CALLER)}&Token={quote(agent)}"
            figures = []
            for n in range(args.loads + 2):  # twice to warm both workers' caches
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector('#card #name:text-is("Ada Lovelace")')
                if n >= 2:
                    figures.append(page.evaluate(MEASURE))
                page.close()
            browser.close()
        control.close()
    weights = sorted({(f["bytes"], f["body_bytes"]) for f in figures})
    rows = []
    for name, key in (
        ("card on screen after its response", "after_response"),
        ("whole load", "whole"),
    ):
        p = percentiles([f[key] / 1000 for f in figures])  # performance.now() is in ms
        rows.append([name, p["p50"], p["p95"], p["p99"]])
    # transferSize counts what crossed the wire (a script revalidated with a 304 is its headers);
    # encodedBodySize the bodies the page is made of, cached or not.
    weight = ", ".join(f"{wire:,} bytes ({body:,} of bodies)" for wire, body in weights)
    print(
        f"\n{len(figures)} loads of a warm card in Chromium (400 px), connector under gunicorn; "
        f"transferred per load: {weight}\n"
    )
    print(table(["", "p50 ms", "p95 ms", "p99 ms"], rows))


if __name__ == "__main__":
    main()
