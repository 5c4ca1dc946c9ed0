// The buttons at the top of a source's (or a channel's) page act on it as saved: each is a
// form of its own, and the edits typed below would be lost without a word. Once the page's
// form has changed, a button says so and asks to save first.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("#content-main form[id$=_form]");
    var buttons = document.querySelectorAll("form.page-button");
    if (!form || !buttons.length) { return; }
    // A save that came back with errors shows edits that are not saved either.
    var changed = Boolean(form.querySelector(".errornote, .errorlist"));
    function mark() { changed = true; }
    form.addEventListener("input", mark);
    form.addEventListener("change", mark);
    form.addEventListener("submit", function () { changed = false; });
    buttons.forEach(function (button) {
      button.addEventListener("submit", function (event) {
        if (!changed) { return; }
        event.preventDefault();
        var note = document.getElementById("unsaved-changes");
        if (!note) {
          note = document.createElement("p");
          note.id = "unsaved-changes";
          note.className = "errornote";
          note.setAttribute("role", "alert");
          var tools = button.closest(".object-tools") || button.parentNode;
          tools.parentNode.insertBefore(note, tools.nextSibling);
        }
        var label = button.querySelector("button").textContent.trim();
        note.textContent = "This page has changes that are not saved. \u201c" + label +
          "\u201d acts on what is saved: save first (or reload the page to drop them).";
      });
    });
  });
})();
