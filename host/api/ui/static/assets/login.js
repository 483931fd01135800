// Login: posts the admin token as JSON; the server answers with a session
// cookie (HttpOnly, so this script never sees it) and the CSRF token.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("login-error");
  const token = document.getElementById("token");
  out.textContent = "";
  if (!token.value.trim()) {
    out.textContent = "Enter the admin token.";
    token.focus();
    return;
  }
  try {
    const resp = await fetch("/ui/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: token.value }),
    });
    if (resp.ok) {
      location.assign("/ui/tasks");
      return;
    }
    const body = await resp.json().catch(() => ({}));
    out.textContent = body.error ? "Refused: " + body.error : "Refused (" + resp.status + ").";
  } catch (e) {
    out.textContent = "Cannot reach the node: " + e.message;
  }
  token.select();
  token.focus();
});
