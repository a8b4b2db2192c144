// Shows progress while a form is sent or a page loads (the console's only script; no inline script anywhere).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var box = document.getElementById("progress");
  if (!box) return;
  box.textContent = form.getAttribute("data-progress") || "Working…";
  box.hidden = false;
  var main = document.getElementById("main");
  if (main) main.setAttribute("aria-busy", "true");
  form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
});
document.addEventListener("click", function (event) {
  var link = event.target.closest ? event.target.closest("a[href]") : null;
  if (!link || link.target || event.ctrlKey || event.metaKey || event.shiftKey) return;
  var box = document.getElementById("progress");
  if (box) { box.textContent = "Loading…"; box.hidden = false; }
});
window.addEventListener("pageshow", function () {
  var box = document.getElementById("progress");
  if (box) box.hidden = true;
});
