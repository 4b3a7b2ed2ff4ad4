// The console's one script (CSP: script-src 'self', no inline script). It reaches the person's local signing
// agent (vgw signer serve, docs/signing.md) at the address the page names in data-agent, and never sees the PIN:
// the agent asks for it on the person's own PC. Each step's failure is shown in words with its code.
"use strict";

function statusLine(text, failed) {
  const line = document.getElementById("signer-status");
  line.textContent = text;
  line.className = failed ? "error" : "ok";
}

async function problemText(reply) {
  try {
    const problem = await reply.json();
    return `${problem.code}: ${problem.detail || problem.title}`;
  } catch (error) {
    return `HTTP ${reply.status}`;
  }
}

// Have the agent sign an XML document; resolves with the agent's answer {summary, said, signed}.
async function signWithCard(agent, xml, missing) {
  let reply;
  try {
    reply = await fetch(`${agent}/v1/sign`, {method: "POST", headers: {"Content-Type": "application/xml"}, body: xml});
  } catch (error) {
    throw new Error(missing);
  }
  if (!reply.ok) {
    throw new Error(await problemText(reply));
  }
  return reply.json();
}

async function postForm(url, fields) {
  return fetch(url, {method: "POST", credentials: "same-origin",
                     headers: {"Content-Type": "application/x-www-form-urlencoded"},
                     body: new URLSearchParams(fields).toString()});
}

async function signIn(button) {
  const {agent, csrf, challenge, submit, next, agentMissing} = button.dataset;
  button.disabled = true;
  try {
    statusLine(button.dataset.working, false);
    const issued = await postForm(challenge, {csrf});
    if (!issued.ok) throw new Error(await problemText(issued));
    const signed = await signWithCard(agent, await issued.text(), agentMissing);
    const opened = await postForm(submit, {csrf, signed: signed.signed});
    if (!opened.ok) throw new Error(await problemText(opened));
    window.location.assign(next);
  } catch (error) {
    statusLine(error.message, true);
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("sign-in-with-card");
  if (button) button.addEventListener("click", () => signIn(button));
});
