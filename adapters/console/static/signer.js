// The console's one script (CSP: script-src 'self', no inline script). It reaches the person's local signing
// agent (vgw signer serve, docs/signing.md) at the address the page names in data-agent, and never sees the PIN:
// the agent asks for it on the person's own PC. Each step's failure is shown in words with its code.
"use strict";

function statusLine(text, failed) {
  const line = document.getElementById("signer-status");
  line.textContent = text;
  line.className = failed ? "error" : "ok";
}

// A refusal in words with its code: the agent's problem document, or the console's refusal page.
async function problemText(reply) {
  const text = await reply.text();
  try {
    const problem = JSON.parse(text);
    return `${problem.code}: ${problem.detail || problem.title}`;
  } catch (error) {
    const refusal = new DOMParser().parseFromString(text, "text/html").getElementById("refusal");
    return refusal ? refusal.textContent : `HTTP ${reply.status}`;
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
  const {agent, csrf, document: challenge, submit, next, agentMissing} = button.dataset;
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

function valueOf(id) {
  const element = document.getElementById(id);
  return element ? element.value : "";
}

// Approve, send back or withdraw: the gateway writes the unsigned action (bound to the voucher's digest and its
// chain), the card signs it through the agent, the gateway checks it as any other action and answers the receipt.
async function signAction(button) {
  const {agent, csrf, document: documentUrl, submit, stage, decision, agentMissing, working} = button.dataset;
  const reasonText = decision === "cancel" ? valueOf("withdraw_text") : valueOf("reason_text");
  document.querySelectorAll("button.sign-action").forEach((each) => { each.disabled = true; });
  try {
    statusLine(working, false);
    const unsigned = await postForm(documentUrl, {csrf, stage, decision, reason_code: valueOf("reason_code"),
                                                  reason_text: reasonText});
    if (!unsigned.ok) throw new Error(await problemText(unsigned));
    const signed = await signWithCard(agent, await unsigned.text(), agentMissing);
    const taken = await postForm(submit, {csrf, signed: signed.signed});
    if (!taken.ok) throw new Error(await problemText(taken));
    const answer = await taken.json();
    statusLine(`${signed.said}: ${answer.outcome}`, false);
    window.location.reload();
  } catch (error) {
    statusLine(error.message, true);
    document.querySelectorAll("button.sign-action").forEach((each) => { each.disabled = false; });
  }
}

// The preparation form (憑單編製): the gateway builds the voucher from the form (its errors shown the usual way,
// by the form's own page), the card signs it, and it is submitted as the agency's system would.
async function signAndSubmit(button) {
  const {agent, csrf, document: documentUrl, submit, agentMissing, working} = button.dataset;
  const form = document.getElementById("prepare");
  button.disabled = true;
  try {
    statusLine(working, false);
    const built = await fetch(documentUrl, {method: "POST", credentials: "same-origin",
                                            headers: {"Content-Type": "application/x-www-form-urlencoded"},
                                            body: new URLSearchParams(new FormData(form)).toString()});
    if (built.status === 422) {
      form.submit();  // the form's own page shows every problem beside its field
      return;
    }
    if (!built.ok) throw new Error(await problemText(built));
    const signed = await signWithCard(agent, await built.text(), agentMissing);
    const taken = await postForm(submit, {csrf, signed: signed.signed});
    if (!taken.ok) throw new Error(await problemText(taken));
    const answer = await taken.json();
    statusLine(`${signed.said}: ${answer.outcome} (${answer.voucher_id})`, false);
  } catch (error) {
    statusLine(error.message, true);
  }
  button.disabled = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const prepare = document.getElementById("sign-and-submit");
  if (prepare) prepare.addEventListener("click", () => signAndSubmit(prepare));
  const button = document.getElementById("sign-in-with-card");
  if (button) button.addEventListener("click", () => signIn(button));
  document.querySelectorAll("button.sign-action").forEach((each) => {
    each.addEventListener("click", () => signAction(each));
  });
});
