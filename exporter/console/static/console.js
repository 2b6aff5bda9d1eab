// The console's only script (the Content-Security-Policy allows no inline script). Pages work without it;
// it only keeps each event's "Event Parameters" disabled until the event is selected, names the
// Launch button after the chosen Activation Status, and shows a copy button by each command (the
// commands are selectable text without it).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[type=checkbox][data-controls]").forEach(function (box) {
    var params = document.getElementById(box.getAttribute("data-controls"));
    if (!params) return;
    var sync = function () { params.disabled = !box.checked; };
    box.addEventListener("change", sync);
    sync();
  });
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var command = document.getElementById(button.getAttribute("data-copy"));
    if (!command || !navigator.clipboard) return;
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(command.textContent).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 2000);
      });
    });
  });
  var launch = document.getElementById("launch");
  if (launch) {
    document.querySelectorAll("input[name=status]").forEach(function (radio) {
      radio.addEventListener("change", function () {
        launch.textContent = radio.value === "paused" ? launch.dataset.paused : launch.dataset.active;
      });
    });
  }
});
