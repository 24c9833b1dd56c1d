// The Set Up MFA link's steps: email and password -> an authenticator app -> QR code and key
// -> a verification code. The page calls the portal's JSON API on the same origin.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var token = $("token").value;
  var email = $("email"), password = $("password"), setup = $("setup");
  var code = $("code"), submit = $("submit"), error = $("error");

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  function clearError() {
    error.textContent = "";
    error.hidden = true;
  }

  // Sends JSON; resolves with the parsed answer, or rejects with the API's message.
  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        if (response.ok) {
          return json;
        }
        var message = json && json.error && json.error.message;
        throw new Error(message || "Something went wrong (" + response.status + "). Try again.");
      });
    }, function () {
      throw new Error("Gatehouse could not be reached. Check your connection and try again.");
    });
  }

  function credentialsFilled() {
    setup.disabled = !(email.value.trim() !== "" && password.value !== "");
  }
  email.addEventListener("input", credentialsFilled);
  password.addEventListener("input", credentialsFilled);
  credentialsFilled();

  $("step-credentials").addEventListener("submit", function (event) {
    event.preventDefault();
    if (setup.disabled) {
      return;
    }
    clearError();
    setup.disabled = true;
    post("/api/v1/mfa/setup", { token: token, email: email.value.trim(), password: password.value })
      .then(function (offer) {
        password.value = "";
        $("qr").src = "data:image/png;base64," + offer.qr_png_base64;
        $("secret").textContent = offer.secret;
        $("step-credentials").hidden = true;
        $("step-app").hidden = false;
        $("have-app").focus();
      }, function (e) {
        showError(e.message);
        credentialsFilled();
      });
  });

  $("download-app").addEventListener("click", function () {
    $("app-help").hidden = false;
  });

  $("have-app").addEventListener("click", function () {
    $("step-app").hidden = true;
    $("step-scan").hidden = false;
    code.focus();
  });

  function codeComplete() {
    submit.disabled = !/^[0-9]{6}$/.test(code.value.trim());
  }
  code.addEventListener("input", codeComplete);

  $("step-code").addEventListener("submit", function (event) {
    event.preventDefault();
    if (submit.disabled) {
      return;
    }
    clearError();
    submit.disabled = true;
    post("/api/v1/mfa/setup/complete", { token: token, code: code.value.trim() })
      .then(function () {
        $("step-scan").hidden = true;
        $("success").hidden = false;
        $("success").focus();
      }, function (e) {
        showError(e.message);
        codeComplete();
      });
  });
})();
