// After an action or a save, the page opens with what it did ("2 imports started.") at its
// top, below the navigation: the focus goes to those messages, so a screen reader reads them
// and the keyboard starts from them, not 40 stops away. A page that placed the focus itself
// (an error summary, a field) keeps it.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var list = document.querySelector("ul.messagelist");
    var focused = document.activeElement;
    if (!list || (focused && focused !== document.body)) { return; }
    if (!list.hasAttribute("aria-label")) { list.setAttribute("aria-label", "Messages"); }
    list.setAttribute("tabindex", "-1");
    list.focus();
  });
})();
