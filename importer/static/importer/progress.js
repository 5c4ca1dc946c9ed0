// Live progress of imports in the admin. Every bar with a data-url polls its JSON endpoint
// until the execution has finished. The bar on an execution's own page polls the page's live
// endpoint instead, and puts the new state, counters, retries and chunk rows in place; at the
// end it reloads the page once to show the final details.
(function () {
  "use strict";

  function setBar(widget, progress) {
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
  }

  function shortLabel(progress) {
    if (progress.percent === null || progress.percent === undefined) {
      return progress.records_submitted + " rec.";
    }
    return progress.percent + "% · " + progress.records_submitted + " rec.";
  }

  function putLive(live) {
    Object.keys(live.fields).forEach(function (name) {
      var cell = document.querySelector(".field-" + name + " .readonly");
      if (cell && cell.innerHTML !== live.fields[name] && name !== "progress_detail") {
        cell.innerHTML = live.fields[name];
      }
    });
    var rows = document.querySelector(".chunk-rows");
    if (rows) {
      rows.innerHTML = live.chunk_rows;
    }
    var count = document.querySelector(".chunk-count");
    if (count) {
      count.textContent = live.chunk_count;
    }
    if (!live.may_cancel) {
      document.querySelectorAll(".cancel-import").forEach(function (link) {
        link.parentNode.removeChild(link);
      });
    }
  }

  function follow(widget) {
    var label = widget.parentNode.querySelector(".import-progress-label");
    var detailed = widget.hasAttribute("data-detailed");
    var url = widget.getAttribute("data-url");
    if (detailed) {
      // The chunk table shows the page of chunks the user chose.
      url = widget.getAttribute("data-live-url") + window.location.search;
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(response.status); }
          return response.json();
        })
        .then(function (progress) {
          setBar(widget, progress);
          if (label) {
            label.textContent = detailed ? progress.label : shortLabel(progress);
          }
          if (detailed) {
            putLive(progress);
          }
          if (progress.finished) {
            if (detailed && widget.getAttribute("data-finished") !== "true") {
              keepMessages();
              window.location.reload();
            }
            return;
          }
          window.setTimeout(poll, 1000);
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }

    if (widget.getAttribute("data-finished") !== "true") {
      poll();
    }
  }

  // The messages of the action that led here ("Import #6 cancelled.") were shown once, by
  // the page the reload replaces: they are carried over to the page it shows instead.
  var KEPT = "importer.messages";

  function keepMessages() {
    var list = document.querySelector("ul.messagelist");
    try {
      if (list) { window.sessionStorage.setItem(KEPT, list.outerHTML); }
    } catch (error) { /* storage off: the messages go, as before */ }
  }

  function showKeptMessages() {
    var kept = null;
    try {
      kept = window.sessionStorage.getItem(KEPT);
      window.sessionStorage.removeItem(KEPT);
    } catch (error) { return; }
    var content = document.getElementById("content");
    if (kept && content && !document.querySelector("ul.messagelist")) {
      content.insertAdjacentHTML("beforebegin", kept);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    showKeptMessages();
    document.querySelectorAll(".import-progress[data-url]").forEach(follow);
  });
})();
