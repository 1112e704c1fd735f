// Niceties only: every page works without this file.
// A "Copy" button beside each value on the Setup page.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".copy code").forEach(function (code) {
    if (!navigator.clipboard) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy-button";
    button.textContent = "Copy";
    var label = code.parentElement.querySelector(".label");
    button.setAttribute("aria-label", "Copy " + (label ? label.textContent : "value"));
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(code.textContent).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
    code.after(button);
  });
});
