// The card page's one script (served as /cards/view.js, allowed by the page's CSP).
//
// Flex's CRM container frames /cards/view#from=<caller>&Token=<agent's token>. Browsers never
// send a URL's fragment, so the caller and the token stay out of every request line a router or
// proxy logs. This script takes them from the fragment, removes it from the address bar and the
// history, and POSTs them (a form body) to /cards/view, which answers the card as escaped HTML.
"use strict";

(() => {
  // Only these go to the server; anything else in the fragment stays in the browser.
  const FIELDS = new Set(["Token", "from", "From", "phone", "email", "identifier"]);
  // The task's ids, kept here and sent only with a "Not this customer" correction.
  const TASK_FIELDS = new Set(["TaskSid", "WorkerSid", "CallSid"]);
  let taskIds = [];
  const card = document.getElementById("card");
  const search = document.getElementById("search");
  const searchBy = document.getElementById("search-by");
  const searchValue = document.getElementById("search-value");
  // The agent's token, in this page's memory only: searches send it in a POST body, as the
  // first lookup did, so it never enters a URL.
  let token = null;
  let inFlight = null;
  let shownCaller = []; // the caller fields of the card on screen (never the token)
  const localTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  // Not URLSearchParams: it reads "+" as a space, and a caller's "+1415..." left unencoded in
  // the fragment must still be a phone number.
  function parseFragment(hash, wanted = FIELDS) {
    const fields = [];
    for (const pair of hash.replace(/^#/, "").split("&")) {
      const cut = pair.indexOf("=");
      const name = decode(cut < 0 ? pair : pair.slice(0, cut));
      if (wanted.has(name)) {
        fields.push([name, cut < 0 ? "" : decode(pair.slice(cut + 1))]);
      }
    }
    return fields;
  }

  function decode(text) {
    try {
      return decodeURIComponent(text);
    } catch {
      return text; // a stray "%": the server refuses what it cannot read
    }
  }

  function show(html) {
    const parsed = new DOMParser().parseFromString(html, "text/html");
    card.replaceChildren(...parsed.body.childNodes);
    const root = card.firstElementChild;
    document.title = (root && root.dataset.title) || "Customer profile";
    localizeTimes();
    setUpTabs();
    const unlink = card.querySelector("#unlink");
    if (unlink) {
      unlink.addEventListener("click", () => notThisCustomer(unlink));
    }
    // Several profiles matched: each button looks up the one its identifier found.
    for (const button of card.querySelectorAll("button[data-identifier]")) {
      button.addEventListener("click", () => {
        load([["Token", token], ["identifier", button.dataset.identifier]]);
      });
    }
    if (root && root.dataset.search === "open" && token) {
      searchValue.focus(); // no customer: the agent's next step is a search
    }
  }

  // The server writes UTC; the agent reads their own time zone (the browser's).
  function localizeTimes() {
    for (const element of card.querySelectorAll("time[datetime]")) {
      const moment = new Date(element.getAttribute("datetime"));
      if (!Number.isNaN(moment.getTime())) {
        element.title = element.textContent; // the UTC time stays on hover
        element.textContent = localTime.format(moment);
      }
    }
  }

  // Tabs as WAI-ARIA's pattern has them: click, or arrows / Home / End on the tab list.
  function setUpTabs() {
    const tabs = [...card.querySelectorAll("[role=tab]")];
    const select = (chosen, focus) => {
      for (const tab of tabs) {
        const selected = tab === chosen;
        tab.setAttribute("aria-selected", String(selected));
        tab.tabIndex = selected ? 0 : -1;
        document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
      }
      if (focus) {
        chosen.focus();
      }
    };
    tabs.forEach((tab, index) => {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (event) => {
        const next = {
          ArrowRight: tabs[(index + 1) % tabs.length],
          ArrowLeft: tabs[(index - 1 + tabs.length) % tabs.length],
          Home: tabs[0],
          End: tabs[tabs.length - 1],
        }[event.key];
        if (next) {
          event.preventDefault();
          select(next, true);
        }
      });
    });
  }

  // "Not this customer": a second click within 5 s confirms (no dialog: Flex frames the page).
  // The correction goes to /v1/cards/unlink; the caller's card then says so and offers search.
  async function notThisCustomer(button) {
    if (button.dataset.armed !== "yes") {
      button.dataset.armed = "yes";
      button.textContent = "Confirm: not this customer";
      setTimeout(() => {
        button.dataset.armed = "";
        button.textContent = "Not this customer";
      }, 5000);
      return;
    }
    button.disabled = true;
    // The caller as the card was asked for (from, or a search's identifier), and what it found.
    const body = new URLSearchParams([
      ["Token", token], // in the body, as every request of this page carries it
      ...shownCaller,
      ["segment_id", button.dataset.segmentId],
      ["matched_identifier", button.dataset.matched],
      ...taskIds,
    ]);
    try {
      const response = await fetch("/v1/cards/unlink", {
        method: "POST",
        body,
        headers: { Accept: "application/json" },
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
      if (!response.ok) {
        const answer = await response.json().catch(() => ({}));
        const message = (answer.error && answer.error.message) || `HTTP ${response.status}`;
        showText("Not recorded", message);
        return;
      }
      load([["Token", token], ...shownCaller]);
    } catch {
      showText("Not recorded", "The connector did not answer; try again shortly.");
    }
  }

  function searchFields() {
    const value = searchValue.value.trim();
    const by = searchBy.value;
    return [by === "from" ? ["from", value] : ["identifier", `${by}:${value}`]];
  }

  function showText(title, message) {
    const article = document.createElement("article");
    const header = document.createElement("header");
    const heading = document.createElement("h1");
    const paragraph = document.createElement("p");
    heading.id = "name";
    heading.textContent = title;
    paragraph.id = "message";
    paragraph.textContent = message;
    header.append(heading);
    article.append(header, paragraph);
    card.replaceChildren(article);
    document.title = title;
  }

  async function load(fields) {
    shownCaller = fields.filter(([name]) => name !== "Token");
    if (inFlight) {
      inFlight.abort(); // the agent moved to another task: that answer no longer matters
    }
    const controller = new AbortController();
    inFlight = controller;
    card.setAttribute("aria-busy", "true");
    showText("Looking up…", "");
    try {
      const response = await fetch(location.pathname, {
        method: "POST",
        body: new URLSearchParams(fields),
        headers: { Accept: "text/html" },
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
        signal: controller.signal,
      });
      const html = await response.text();
      if ((response.headers.get("Content-Type") || "").startsWith("text/html")) {
        show(html);
      } else {
        showText("Something went wrong", `The connector answered HTTP ${response.status}.`);
      }
    } catch (error) {
      if (error.name === "AbortError") {
        return;
      }
      showText("Profile unavailable", "The connector did not answer; try again shortly.");
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        card.removeAttribute("aria-busy");
      }
    }
  }

  function fromFragment() {
    if (!location.hash) {
      return; // nothing new: keep what the page shows
    }
    const fields = parseFragment(location.hash);
    taskIds = parseFragment(location.hash, TASK_FIELDS);
    // Out of the address bar and the history before anything else happens.
    history.replaceState(null, "", location.pathname + location.search);
    const given = fields.find(([name]) => name === "Token");
    if (given) {
      token = given[1];
      search.hidden = false;
    }
    searchValue.value = ""; // a new task: the last one's search is not about this caller
    load(fields);
  }

  // The page's policy forbids submitting a form (form-action 'none'): the search is a POST
  // from here, with the token from memory.
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    if (token && searchValue.value.trim()) {
      load([["Token", token], ...searchFields()]);
    }
  });

  // Flex may change only the fragment when the agent switches task: no reload, a hashchange.
  window.addEventListener("hashchange", fromFragment);
  fromFragment();
})();
