// Live progress of imports in the admin. Every bar with a data-url polls its JSON endpoint
// until the execution has finished. The bar on an execution's own page polls the page's live
// endpoint instead, and puts the new state, counters, retries and chunk rows in place; at the
// end it reloads the page once to show the final details. On the list, an import that ends
// reloads the list (unless rows are ticked for an action), so its state, duration and reason
// show. Polls pause while the tab is hidden, slow down on a slow link, and say so when they
// stop working (a session that ended, a server away).
(function () {
  "use strict";

  var POLL_MS = 1000;
  var RETRY_MS = 5000;
  var FAILURES_TOLD = 3;
  // How long the end of an import is announced before the page reloads with its details.
  var ANNOUNCE_MS = 2000;

  // Where the focus is, as a selector that finds the same control on a page written anew:
  // by its id, its link, its row of chunks or the page action it belongs to.
  function focusSelector(focused) {
    if (!focused || focused === document.body) { return ""; }
    if (focused.id) { return "#" + CSS.escape(focused.id); }
    var tag = focused.tagName.toLowerCase();
    var row = focused.closest("tr.chunk-row[data-index]");
    if (row) {
      return 'tr.chunk-row[data-index="' + row.getAttribute("data-index") + '"] ' + tag;
    }
    var action = focused.closest("[data-action]");
    if (action) { return '[data-action="' + action.getAttribute("data-action") + '"] ' + tag; }
    var href = focused.getAttribute("href");
    return href ? 'a[href="' + CSS.escape(href) + '"]' : "";
  }

  function focusAgain(selector) {
    if (!selector) { return; }
    try {
      var element = document.querySelector(selector);
      if (element) { element.focus({ preventScroll: true }); }
    } catch (error) { /* a selector this page cannot read: focus stays where it is */ }
  }

  function setBar(widget, progress, text) {
    var bar = widget.querySelector(".import-progress-bar");
    var known = progress.percent !== null && progress.percent !== undefined;
    widget.classList.toggle("indeterminate", !known);
    bar.style.width = (known ? progress.percent : 100) + "%";
    widget.setAttribute("data-percent", known ? progress.percent : "");
    widget.setAttribute("data-state", progress.state);
    if (known) {
      widget.setAttribute("aria-valuenow", progress.percent);
    } else {
      widget.removeAttribute("aria-valuenow");
    }
    widget.setAttribute("aria-valuetext", text);
  }

  function shortLabel(progress) {
    var records = progress.records_submitted + " rec.";
    if (progress.finished) {
      return progress.state_label + " · " + records;
    }
    if (progress.percent === null || progress.percent === undefined) {
      return records;
    }
    return progress.percent + "% · " + records;
  }

  // Puts the live figures in place. Returns what to announce ("" for nothing), and whether
  // the chunk rows were held back: never rewritten while the keyboard's focus is in them, so
  // the control being read is neither re-read nor lost (a click leaves no such focus).
  function putLive(live, widget) {
    var said = "";
    Object.keys(live.fields).forEach(function (name) {
      var cell = document.querySelector(".field-" + name + " .readonly");
      if (cell && cell.innerHTML !== live.fields[name] && name !== "progress_detail") {
        cell.innerHTML = live.fields[name];
      }
    });
    var rows = document.querySelector(".chunk-rows");
    // Rewritten only when they changed: a rewrite drops the text someone is selecting.
    var changed = rows && live.chunk_rows !== null && live.chunk_rows !== undefined;
    var focused = document.activeElement;
    var held = changed && rows.contains(focused) && focused.matches(":focus-visible");
    if (changed && !held) {
      // An error someone opened to read stays open.
      var opened = Array.prototype.map.call(
        rows.querySelectorAll("tr.chunk-row details[open]"),
        function (details) { return details.closest("tr").getAttribute("data-index"); });
      rows.innerHTML = live.chunk_rows;
      opened.forEach(function (index) {
        var details = rows.querySelector('tr.chunk-row[data-index="' + index + '"] details');
        if (details) { details.open = true; }
      });
    }
    // The retries' countdowns, by the server's clock.
    document.querySelectorAll(".chunk-rows [data-due-at]").forEach(function (due) {
      var wait = Math.round((Number(due.getAttribute("data-due-at")) - live.now_ms) / 1000);
      due.textContent = wait > 0 ? "in " + wait + " s" : "due now";
    });
    var count = document.querySelector(".chunk-count");
    if (count) {
      count.textContent = live.chunk_count;
    }
    // The counts of the states the chunks may be narrowed to, as the table's.
    var states = document.querySelector(".chunk-states");
    if (states && typeof live.chunk_states === "string" &&
        states.innerHTML !== live.chunk_states && !states.contains(document.activeElement)) {
      states.innerHTML = live.chunk_states;
      states.hidden = !live.chunk_states;
    }
    // A page that failed is retried from this page: its button shows while there is one.
    document.querySelectorAll('li[data-action="retry_failed_chunks"]').forEach(function (item) {
      if (item.hidden && live.may_retry) {
        said = "A page failed: “Retry failed chunks” is now at the top of the page.";
      }
      item.hidden = !live.may_retry;
    });
    if (!live.may_cancel) {
      document.querySelectorAll(".cancel-import").forEach(function (link) {
        var item = link.closest("li") || link;
        if (item.contains(document.activeElement)) {  // the focus goes to the progress
          widget.setAttribute("tabindex", "-1");
          widget.focus({ preventScroll: true });
        }
        item.parentNode.removeChild(item);
      });
    }
    return { said: said, held: held };
  }

  // Where screen readers hear of a change: on an execution's page, the line under its bar
  // (rendered with the page, empty); on the list, one line for the whole page that names
  // the import, and only its end (a line per row would chatter while several run).
  function announce(widget, text, named) {
    if (widget.hasAttribute("data-detailed")) {
      var line = widget.parentNode.querySelector(".import-progress-status");
      if (line) { line.textContent = text; }
      return;
    }
    var page = document.querySelector(".imports-status");
    if (!page) { return; }
    var name = (widget.getAttribute("aria-label") || "").replace(/^Progress of /, "");
    page.textContent = text && named && name ? name + ": " + text : text;
  }

  function whenVisible(next) {
    if (!document.hidden) {
      next();
      return;
    }
    document.addEventListener("visibilitychange", function wake() {
      if (!document.hidden) {
        document.removeEventListener("visibilitychange", wake);
        next();
      }
    });
  }

  function follow(widget) {
    var label = widget.parentNode.querySelector(".import-progress-label");
    var detailed = widget.hasAttribute("data-detailed");
    var url = widget.getAttribute("data-url");
    var shownState = widget.getAttribute("data-state");
    var rowsDigest = "";
    var failures = 0;
    if (detailed) {
      // The chunk table shows the page of chunks the user chose.
      url = widget.getAttribute("data-live-url") + window.location.search;
    }

    function pollUrl() {
      if (!detailed || !rowsDigest) { return url; }
      return url + (url.indexOf("?") < 0 ? "?" : "&") + "rows=" + rowsDigest;
    }

    function failed(why) {
      failures += 1;
      var told = {
        session: "Live updates stopped: your session has ended. Log in again, then reload the page.",
        gone: "Live updates stopped: this import is no longer in the history.",
      }[why];
      if (told || failures >= FAILURES_TOLD) {
        announce(widget, told ||
          "Live updates paused: the server does not answer. They go on once it does.", false);
      }
      if (!told) {
        window.setTimeout(function () { whenVisible(poll); }, RETRY_MS);
      }
    }

    function poll() {
      var began = Date.now();
      fetch(pollUrl(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          // Logged out, the server answers with the login page (a redirect), or refuses.
          if (response.redirected || response.status === 401 || response.status === 403) {
            throw new Error("session");
          }
          if (response.status === 404) { throw new Error("gone"); }
          // A proxy's error page while the app restarts, a server error: tried again.
          var type = response.headers.get("Content-Type") || "";
          if (!response.ok || type.indexOf("json") < 0) { throw new Error(response.status); }
          return response.json();
        })
        .then(function (progress) {
          var text = detailed ? progress.label : shortLabel(progress);
          if (failures >= FAILURES_TOLD) {
            announce(widget, "", false);
          }
          failures = 0;
          setBar(widget, progress, text);
          if (label) {
            label.textContent = text;
          }
          var said = [];
          if (progress.state !== shownState) {
            shownState = progress.state;
            if (detailed || progress.finished) {
              said.push("Import " + progress.state_label.toLowerCase() + ".");
            }
          }
          if (detailed) {
            var put = putLive(progress, widget);
            if (!put.held) { rowsDigest = progress.rows_digest || ""; }  // else sent again
            if (put.said) { said.push(put.said); }
          }
          if (said.length) { announce(widget, said.join(" "), true); }
          if (progress.finished) {
            if (widget.getAttribute("data-finished") !== "true") {
              widget.setAttribute("data-finished", "true");
              if (!said.length) {  // opened after the end: said now, before the reload
                announce(widget, "Import " + progress.state_label.toLowerCase() + ".", true);
              }
              ended(detailed);
            }
            return;
          }
          // A slow link: no new poll before the last one's time has passed again.
          var took = Date.now() - began;
          window.setTimeout(function () { whenVisible(poll); }, Math.max(POLL_MS, 2 * took));
        })
        .catch(function (error) { failed(error && error.message); });
    }

    if (widget.getAttribute("data-finished") !== "true") {
      poll();
    }
  }

  // The page shows the final details once reloaded: the execution's page at once, the list
  // once its bars have settled for a moment, and not while someone is busy on it (rows
  // ticked for an action, a search being typed, a filter being chosen): then a line says
  // an import ended, with a link to reload.
  var reloadSoon = null;

  function busyOnList() {
    if (document.querySelector("#result_list input.action-select:checked")) { return true; }
    var focused = document.activeElement;
    if (focused && /^(INPUT|SELECT|TEXTAREA)$/.test(focused.tagName)) { return true; }
    var search = document.getElementById("searchbar");
    return Boolean(search && search.value !== search.defaultValue);
  }

  function ended(detailed) {
    if (detailed) {  // once the end is announced
      window.setTimeout(reloadKeeping, ANNOUNCE_MS);
      return;
    }
    window.clearTimeout(reloadSoon);
    reloadSoon = window.setTimeout(function () {
      if (!busyOnList()) {
        reloadKeeping();
        return;
      }
      var line = document.querySelector(".imports-status");
      if (line && !line.classList.contains("imports-ended")) {
        line.classList.add("imports-ended");
        line.innerHTML = 'An import on this page has ended. <a href="">Reload</a> to see how.';
      }
    }, 1500);
  }

  // The messages of the action that led here ("Import #6 cancelled.") were shown once, by
  // the page the reload replaces, and the focus was somewhere on it: both are carried over.
  var KEPT = "importer.messages";
  var FOCUSED = "importer.focused";

  function reloadKeeping() {
    var list = document.querySelector("ul.messagelist");
    var focused = document.activeElement;
    try {
      if (list) { window.sessionStorage.setItem(KEPT, list.outerHTML); }
      var where = focusSelector(focused);
      if (where) { window.sessionStorage.setItem(FOCUSED, where); }
    } catch (error) { /* storage off: the messages and focus go, as before */ }
    window.location.reload();
  }

  function restoreKept() {
    var kept = null;
    var focused = null;
    try {
      kept = window.sessionStorage.getItem(KEPT);
      focused = window.sessionStorage.getItem(FOCUSED);
      window.sessionStorage.removeItem(KEPT);
      window.sessionStorage.removeItem(FOCUSED);
    } catch (error) { return; }
    var content = document.getElementById("content");
    if (kept && content && !document.querySelector("ul.messagelist")) {
      content.insertAdjacentHTML("beforebegin", kept);
    }
    focusAgain(focused);
  }

  // The list's one status line, there and empty before anything is said in it: a live
  // region added with its text is often not announced.
  function listStatusLine() {
    var list = document.getElementById("changelist");
    if (!list || document.querySelector(".imports-status") ||
        !list.querySelector(".import-progress[data-url]:not([data-detailed])")) { return; }
    var line = document.createElement("p");
    line.className = "imports-status";
    line.setAttribute("role", "status");
    list.parentNode.insertBefore(line, list);
  }

  document.addEventListener("DOMContentLoaded", function () {
    restoreKept();
    listStatusLine();
    document.querySelectorAll(".import-progress[data-url]").forEach(follow);
  });
})();
