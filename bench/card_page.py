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
OTHER = "+447700900123"
# Notes the moment the card's name replaces "Looking up…" (the script's last step is the DOM).
RENDER_WATCH = """
window.__renders = [];
new MutationObserver(() => {
  const name = document.querySelector("#card #name");
  const text = name && name.textContent;
  const last = window.__renders[window.__renders.length - 1];
  if (text && text !== "Looking up\u2026" && text !== "Waiting for a caller"
      && (!last || last.name !== text)) {
    window.__renders.push({ name: text, at: performance.now() });
    if (text === "Ada Lovelace" && !window.__rendered) {
      window.__rendered = performance.now();
    }
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""
# The agent takes another task: Flex changes the fragment only; the page asks for that card.
SWITCH = """(url) => { window.__renders = []; location.hash = url.split("#")[1]; }"""
SWITCHED = """() => {
  const posts = performance.getEntriesByType("resource").filter((e) => e.initiatorType === "fetch");
  return window.__renders[0].at - posts[posts.length - 1].responseEnd;
}"""
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
        # One agent makes every lookup: its per-minute limit is lifted for the run.
        text = text.replace("enabled = true", "enabled = false")
        config.write_text(text + "\n[auth]\nagent_lookups_per_minute = 100000\n", "utf-8")
        env = {"SEGMENT_PROFILE_API_TOKEN": TOKEN, **SANDBOX.twilio_environment(sandbox.url)}
        agent = control.issue_agent_token()["token"]
        with served_process(config, env, workers=2) as served, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 400, "height": 900})
            context.add_init_script(RENDER_WATCH)
            url = f"{served.url}/cards/view#from={quote(CALLER)}&Token={quote(agent)}"
            figures, switches = [], []
            other = url.replace(quote(CALLER), quote(OTHER))
            for n in range(args.loads + 2):  # twice to warm both workers' caches
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector('#card #name:text-is("Ada Lovelace")')
                if n >= 2:
                    figures.append(page.evaluate(MEASURE))
                # Then the agent switches task, and back: the page is loaded already.
                for target, name in ((other, "Alan Turing"), (url, "Ada Lovelace")):
                    page.evaluate(SWITCH, target)
                    page.wait_for_selector(f'#card #name:text-is("{name}")')
                    if n >= 2:
                        switches.append(page.evaluate(SWITCHED))
                page.close()
            browser.close()
        control.close()
    weights = sorted({(f["bytes"], f["body_bytes"]) for f in figures})
    rows = []
    series = {
        "page load: the card on screen after its response": [f["after_response"] for f in figures],
        "page load: navigation to the card on screen": [f["whole"] for f in figures],
        "task switch (a new fragment): the card on screen after its response": switches,
    }
    for name, samples in series.items():
        p = percentiles([ms / 1000 for ms in samples])  # performance.now() is in ms
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
