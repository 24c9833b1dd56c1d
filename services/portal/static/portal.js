// The Admins Without MFA Required list: select all, and the Require MFA confirmation modal.
// Without this script the list still works: Require MFA then posts the selection directly.
(function () {
  "use strict";
  var form = document.getElementById("require-mfa-form");
  var dialog = document.getElementById("confirm-require-mfa");
  if (!form || !dialog) {
    return;
  }
  var selectAll = document.getElementById("select-all");
  var boxes = Array.prototype.slice.call(form.querySelectorAll("input.select-admin"));
  var confirm = document.getElementById("confirm-require-mfa-button");
  var none = document.getElementById("confirm-require-mfa-none");
  var menu = document.getElementById("actions-menu");

  function selected() {
    return boxes.filter(function (b) { return b.checked; }).length;
  }

  function update() {
    var n = selected();
    if (selectAll) {
      selectAll.checked = n > 0 && n === boxes.length;
      selectAll.indeterminate = n > 0 && n < boxes.length;
    }
    document.getElementById("selected-count").textContent = String(n);
  }

  if (selectAll) {
    selectAll.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = selectAll.checked; });
      update();
    });
  }
  boxes.forEach(function (b) { b.addEventListener("change", update); });
  update();

  document.getElementById("require-mfa").addEventListener("click", function (event) {
    event.preventDefault();
    if (menu) {
      menu.open = false;
    }
    var n = selected();
    none.hidden = n > 0;
    confirm.disabled = n === 0;
    update();
    dialog.showModal();
    (n > 0 ? confirm : document.getElementById("cancel")).focus();
  });

  document.getElementById("cancel").addEventListener("click", function () {
    dialog.close();
  });

  // Escape closes the menu too, as it closes the modal.
  if (menu) {
    menu.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        document.getElementById("actions").focus();
      }
    });
  }
})();
