// Live progress of imports in the admin: every bar with a data-url polls its JSON endpoint
// until the execution has finished, then reloads the page once to show the final details.
(function () {
  "use strict";

  function describe(progress) {
    var parts = [progress.percent + "%", progress.state];
    if (progress.records_submitted) {
      parts.push(progress.records_submitted + " records");
    }
    if (progress.records_per_second) {
      parts.push(progress.records_per_second + " records/s");
    }
    if (progress.seconds_left !== null && progress.seconds_left !== undefined) {
      parts.push("about " + progress.seconds_left + " s left");
    }
    if (progress.stalled) {
      parts.push("STALLED");
    }
    return parts.join(" · ");
  }

  function follow(widget) {
    var bar = widget.querySelector(".import-progress-bar");
    var label = widget.parentNode.querySelector(".import-progress-label");
    var detailed = widget.hasAttribute("data-detailed");

    function poll() {
      fetch(widget.getAttribute("data-url"), { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (progress) {
          bar.style.width = progress.percent + "%";
          widget.setAttribute("data-percent", progress.percent);
          widget.setAttribute("data-state", progress.state);
          if (label) {
            label.textContent = detailed ? describe(progress) : progress.percent + "%";
          }
          if (progress.finished) {
            if (detailed && widget.getAttribute("data-finished") !== "true") {
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

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".import-progress[data-url]").forEach(follow);
  });
})();
