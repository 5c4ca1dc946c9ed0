// A form with field conditions (an import source, a notification channel) shows only the
// rows that its choices (kind, paging, authentication) use. Without JavaScript every row
// stays visible, and the server ignores the settings the choices do not use.
(function () {
  "use strict";

  // On a page that shows the settings without inputs (who may only view them), the
  // choices stored come with the page.
  var stored = {};

  function chosen(form, name) {
    var input = form.querySelector("[name=" + name + "]");
    if (input && input.type === "file") { return fileChosen(form, input, name); }
    if (input) { return input.value; }
    return stored[name] === undefined || stored[name] === null ? "" : String(stored[name]);
  }

  // A file input is a chooser by whether there is a file: one picked now, or the stored one
  // unless its "Clear" box is ticked ("" when none).
  function fileChosen(form, input, name) {
    if (input.value) { return "uploaded"; }
    var clear = form.querySelector("[name=" + name + "-clear]");
    if (clear && clear.checked) { return ""; }
    return stored[name] ? String(stored[name]) : "";
  }

  function used(form, alternatives) {
    return alternatives.some(function (conditions) {
      return Object.keys(conditions).every(function (chooser) {
        return conditions[chooser].indexOf(chosen(form, chooser)) !== -1;
      });
    });
  }

  function apply(form, conditions) {
    Object.keys(conditions).forEach(function (name) {
      // A page that only shows the settings has masked stand-ins for those that may hold
      // a secret, named after the setting.
      var row = form.querySelector(".form-row.field-" + name) ||
        form.querySelector(".form-row.field-" + name + "_masked");
      if (row) {
        row.hidden = !used(form, conditions[name]);
      }
    });
    // A fieldset whose rows are all hidden goes too.
    form.querySelectorAll("fieldset.module").forEach(function (fieldset) {
      var rows = fieldset.querySelectorAll(".form-row");
      if (!rows.length) { return; }
      fieldset.hidden = Array.prototype.every.call(rows, function (row) { return row.hidden; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var data = document.getElementById("form-conditions");
    var form = data && data.closest("form");
    if (!form) { return; }
    var conditions = JSON.parse(data.textContent);
    var choices = document.getElementById("form-chosen");
    stored = choices ? JSON.parse(choices.textContent) : {};
    var choosers = {};
    Object.keys(conditions).forEach(function (name) {
      conditions[name].forEach(function (alternative) {
        Object.keys(alternative).forEach(function (chooser) { choosers[chooser] = true; });
      });
    });
    Object.keys(choosers).forEach(function (name) {
      [name, name + "-clear"].forEach(function (inputName) {
        var input = form.querySelector("[name=" + inputName + "]");
        if (input) {
          input.addEventListener("change", function () { apply(form, conditions); });
        }
      });
    });
    apply(form, conditions);
    // A collapsed section holding an error opens, so the error is seen; so does the
    // section a link of the error summary points into.
    form.querySelectorAll("details").forEach(function (details) {
      if (details.querySelector(".errorlist")) { details.open = true; }
    });
    document.querySelectorAll(".error-summary a").forEach(function (link) {
      link.addEventListener("click", function () {
        var target = document.getElementById(link.getAttribute("href").slice(1));
        var details = target && target.closest("details");
        if (details) { details.open = true; }
      });
    });
    // A save that came back with errors: the summary takes the focus, so a keyboard or
    // screen reader user starts there, not 40 stops away behind the navigation.
    var summary = document.querySelector(".error-summary");
    if (summary) { summary.focus(); }
  });
})();
