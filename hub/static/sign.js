// Signs a data contract in the browser with WebCrypto Ed25519. The private
// key is read from a local file and never leaves the browser: the file
// input has no name, so the form does not send it; only the signature goes.
"use strict";
(function () {
  var form = document.getElementById("browser-sign");
  if (!form || !window.crypto || !crypto.subtle) { return; }
  form.hidden = false;
  var status = document.getElementById("browser-sign-status");
  function b64(bytes) {
    var s = "";
    new Uint8Array(bytes).forEach(function (b) { s += String.fromCharCode(b); });
    return btoa(s);
  }
  function der(pem) {
    var body = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
    var raw = atob(body), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  form.addEventListener("submit", function (ev) {
    if (form.elements.signature.value) { return; }
    ev.preventDefault();
    var file = document.getElementById("private-key").files[0];
    if (!file) { status.textContent = "Choose your private key file first."; return; }
    file.text().then(function (pem) {
      return crypto.subtle.importKey("pkcs8", der(pem), { name: "Ed25519" }, false, ["sign"]);
    }).then(function (key) {
      return crypto.subtle.sign({ name: "Ed25519" }, key, new TextEncoder().encode(form.dataset.terms));
    }).then(function (sig) {
      form.elements.signature.value = b64(sig);
      form.submit();
    }).catch(function (err) {
      status.textContent = "Could not sign in this browser: " + err.message + ". Use plinth contract sign instead.";
    });
  });
})();
