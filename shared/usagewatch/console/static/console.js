// The console's page script: Cognito sign-in (USER_PASSWORD_AUTH, with the first sign-in's new password), the
// token kept in this page only and sent as Authorization on every htmx request, CSV downloads the same way.
"use strict";
(function () {
  let token = null;
  let signinHtml = "";

  function claims(jwt) {
    try {
      const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part));
    } catch (e) {
      return {};
    }
  }

  function expired() {
    return !token || (claims(token).exp || 0) * 1000 <= Date.now();
  }

  function showSignin(message) {
    token = null;
    document.getElementById("nav").hidden = true;
    const view = document.getElementById("view");
    view.innerHTML = signinHtml;
    bindSignin();
    if (message) {
      document.getElementById("signin-error").textContent = message;
    }
  }

  async function cognito(target, body) {
    const endpoint = document.body.dataset.endpoint;
    const answer = await fetch(endpoint + "/", {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService." + target,
      },
      body: JSON.stringify(body),
    });
    const data = await answer.json();
    if (!answer.ok) {
      throw new Error(data.message || data.__type || "sign-in failed");
    }
    return data;
  }

  function signedIn(result) {
    token = result.IdToken;
    document.getElementById("nav").hidden = false;
    htmx.ajax("GET", "p/overview", "#view");
  }

  let session = null;

  async function submitSignin(event) {
    event.preventDefault();
    const clientId = document.body.dataset.clientId;
    const username = document.getElementById("username").value;
    const error = document.getElementById("signin-error");
    error.textContent = "";
    try {
      if (session) {
        const answer = await cognito("RespondToAuthChallenge", {
          ClientId: clientId,
          ChallengeName: "NEW_PASSWORD_REQUIRED",
          Session: session,
          ChallengeResponses: { USERNAME: username, NEW_PASSWORD: document.getElementById("new-password").value },
        });
        session = null;
        signedIn(answer.AuthenticationResult);
        return;
      }
      const answer = await cognito("InitiateAuth", {
        AuthFlow: "USER_PASSWORD_AUTH",
        ClientId: clientId,
        AuthParameters: { USERNAME: username, PASSWORD: document.getElementById("password").value },
      });
      if (answer.ChallengeName === "NEW_PASSWORD_REQUIRED") {
        session = answer.Session;
        document.getElementById("newpass").hidden = false;
        document.getElementById("new-password").required = true;
        error.textContent = "Choose a new password to finish the first sign-in.";
        return;
      }
      signedIn(answer.AuthenticationResult);
    } catch (e) {
      error.textContent = e.message;
    }
  }

  function bindSignin() {
    const form = document.getElementById("signin-form");
    if (form) {
      form.addEventListener("submit", submitSignin);
    }
  }

  async function download(button) {
    if (expired()) {
      showSignin("Your session has ended: sign in again.");
      return;
    }
    const answer = await fetch(button.dataset.href, { headers: { Authorization: "Bearer " + token } });
    if (answer.status === 401) {
      showSignin("Your session has ended: sign in again.");
      return;
    }
    const blob = await answer.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "usagewatch.csv";
    link.click();
    URL.revokeObjectURL(link.href);
  }

  document.addEventListener("DOMContentLoaded", function () {
    signinHtml = document.getElementById("view").innerHTML;
    bindSignin();
    document.getElementById("signout").addEventListener("click", function () {
      showSignin("Signed out.");
    });
    document.body.addEventListener("click", function (event) {
      const button = event.target.closest("button.csv");
      if (button) {
        download(button);
      }
    });
    document.body.addEventListener("htmx:configRequest", function (event) {
      if (expired()) {
        event.preventDefault();
        showSignin("Your session has ended: sign in again.");
        return;
      }
      event.detail.headers["Authorization"] = "Bearer " + token;
    });
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      const status = event.detail.xhr.status;
      if (status === 401) {
        event.detail.shouldSwap = false;
        showSignin("Your session has ended: sign in again.");
      } else if (status === 400 || status === 403 || status === 404) {
        event.detail.shouldSwap = true;
        event.detail.isError = false;
      }
    });
  });
})();
