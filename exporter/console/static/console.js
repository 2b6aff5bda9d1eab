// The console's only script (the Content-Security-Policy allows no inline script). Pages work without it;
// it only keeps each event's "Event Parameters" disabled until the event is selected, and names the
// Launch button after the chosen Activation Status.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[type=checkbox][data-controls]").forEach(function (box) {
    var params = document.getElementById(box.getAttribute("data-controls"));
    if (!params) return;
    var sync = function () { params.disabled = !box.checked; };
    box.addEventListener("change", sync);
    sync();
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
