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

  // Bulk actions by filter ask a question only the server can word: how many tasks they
  // touch. Ask it (a GET), then confirm in the browser; Cancel sends nothing.
  document.addEventListener("htmx:confirm", function (event) {
    var elt = event.detail.elt;
    var url = elt && elt.getAttribute && elt.getAttribute("data-question-url");
    if (!url) return;
    event.preventDefault();
    var params = new URLSearchParams();
    ["q", "queue", "task"].forEach(function (name) {
      var input = elt.form && elt.form.elements[name];
      if (input && input.value) params.set(name, input.value);
    });
    params.set("action", elt.value);
    params.set("scope", "filter");
    fetch(url + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (data) { return data.question; })
      .catch(function () { return "This changes every task the filter matches. Go ahead?"; })
      .then(function (question) {
        if (window.confirm(question)) event.detail.issueRequest(true);
      });
  });

  document.addEventListener("htmx:sendError", function () {
    notice("The monitor cannot reach the server; retrying with the next refresh.", "error");
  });
})();
