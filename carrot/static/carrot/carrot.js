/* The carrot monitor's few behaviours. Every page also works without them. */
(function () {
  "use strict";

  function showKind(form) {
    if (!form) return;
    var checked = form.querySelector('input[name="kind"]:checked');
    if (!checked) return;
    form.querySelectorAll(".kind").forEach(function (el) {
      el.hidden = !el.classList.contains("kind-" + checked.value);
    });
  }

  function notice(text, level) {
    var box = document.getElementById("notices");
    if (!box) return;
    var p = document.createElement("p");
    p.className = "notice notice-" + level;
    p.textContent = text;
    box.appendChild(p);
    fade(box);
  }

  function fade(box) {
    box.querySelectorAll(".notice-success:not([data-fading])").forEach(function (p) {
      p.setAttribute("data-fading", "1");
      setTimeout(function () { p.remove(); }, 6000);
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.name === "kind") showKind(target.form);
    if (target.classList && target.classList.contains("select-all")) {
      var form = target.form;
      form.querySelectorAll("input.row-select").forEach(function (box) {
        box.checked = target.checked;
      });
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(showKind);
    fade(document.getElementById("notices") || document.body);
  });

  document.addEventListener("htmx:afterSettle", function () {
    var box = document.getElementById("notices");
    if (box) fade(box);
  });

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    var text = status === 403 ? "You are not allowed to do that (403)."
      : status === 404 ? "That task or schedule no longer exists (404)."
      : "The server could not do that (" + status + "). Try again.";
    notice(text, "error");
  });

  document.addEventListener("htmx:sendError", function () {
    notice("The monitor cannot reach the server; retrying with the next refresh.", "error");
  });
})();
