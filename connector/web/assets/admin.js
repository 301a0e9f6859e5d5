// The admin's console's one script (served as /admin.js, allowed by the page's CSP).
//
// A Flex admin opens /admin#Token=<token>: browsers never send a URL's fragment, so the token
// stays out of every request line. This script takes it, removes it from the address bar and
// the history, and keeps it in memory for its POSTs. Without a token, the server's 401 makes
// the browser ask for the admin's Basic credentials, which it then sends by itself.
// Every POST carries X-Connector-Admin: the server refuses POSTs without it (another site's
// page cannot add it), so remembered Basic credentials cannot be used across sites.
"use strict";

(() => {
  const root = document.getElementById("console");
  let token = null;

  function fromFragment() {
    for (const pair of location.hash.replace(/^#/, "").split("&")) {
      const cut = pair.indexOf("=");
      if (cut > 0 && decodeURIComponent(pair.slice(0, cut)) === "Token") {
        try {
          token = decodeURIComponent(pair.slice(cut + 1));
        } catch {
          token = pair.slice(cut + 1);
        }
      }
    }
    if (location.hash) {
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function fragment(html) {
    const parsed = new DOMParser().parseFromString(html, "text/html");
    return [...parsed.body.childNodes];
  }

  async function post(path) {
    const body = new URLSearchParams(token ? [["Token", token]] : []);
    const response = await fetch(path, {
      method: "POST",
      body,
      headers: { Accept: "text/html", "X-Connector-Admin": "1" },
      credentials: "same-origin",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    const html = await response.text();
    if (!(response.headers.get("Content-Type") || "").startsWith("text/html")) {
      throw new Error(`The connector answered HTTP ${response.status}.`);
    }
    return html;
  }

  function showText(target, message) {
    const paragraph = document.createElement("p");
    paragraph.className = "failed";
    paragraph.textContent = message;
    target.replaceChildren(paragraph);
  }

  async function load(path) {
    root.setAttribute("aria-busy", "true");
    try {
      root.replaceChildren(...fragment(await post(path)));
      const article = root.firstElementChild;
      document.title = (article && article.dataset.title) || "Connector admin";
    } catch (error) {
      showText(root, error.message || "The connector did not answer; try again.");
    } finally {
      root.removeAttribute("aria-busy");
    }
  }

  async function testConnection(button) {
    const target = document.getElementById("checks");
    button.disabled = true;
    target.replaceChildren(document.createTextNode("Testing…"));
    try {
      target.replaceChildren(...fragment(await post("/admin/test-connection")));
    } catch (error) {
      showText(target, error.message || "The connector did not answer; try again.");
    } finally {
      button.disabled = false;
    }
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) {
      return;
    }
    const action = button.dataset.action;
    if (action === "test-connection") {
      testConnection(button);
    } else if (action === "outbox/purge-dead" && !confirm("Delete every dead letter?")) {
      return;
    } else {
      button.disabled = true;
      load(`/admin/${action}`);
    }
  });

  fromFragment();
  load("/admin");
})();
