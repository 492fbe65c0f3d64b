// Submits the SAML binding form as soon as the page loads (no inline script, CSP script-src 'self').
document.addEventListener("DOMContentLoaded", function () {
  var form = document.forms[0];
  if (form) { form.submit(); }
});
