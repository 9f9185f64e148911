// Keyboard shortcuts for the rating page: A/1, B/2, T/3. Served as a file so the
// Content-Security-Policy can forbid every inline script (model output must never run).
(function () {
  "use strict";
  var keys = { a: "choose-a", "1": "choose-a", b: "choose-b", "2": "choose-b", t: "choose-tie", "3": "choose-tie" };
  var sent = false;
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    var id = keys[event.key.toLowerCase()];
    if (!id) return;
    var button = document.getElementById(id);
    if (button) { event.preventDefault(); button.click(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("rate-form");
    if (!form) return;
    // One answer per page: later clicks are ignored here (the server also counts a pair once).
    form.addEventListener("submit", function (event) {
      if (sent) { event.preventDefault(); return; }
      sent = true;
      form.classList.add("sending");
    });
    // Coming back with the browser's Back button restores the page from cache: allow answering again.
    window.addEventListener("pageshow", function () { sent = false; form.classList.remove("sending"); });
  });
})();
