/*
 * The self-service page of ngx_tsb_module: reads the location's policy,
 * makes a key and CSR with WebCrypto (or takes a CSR), submits it to the
 * sign location, follows the approvals with ?wait= long-polling and offers
 * the certificate.  Plain browser JavaScript; the one library is
 * x509.bundle.js (@peculiar/x509, global tsbX509).
 */
"use strict";

(function () {

const X = window.tsbX509;
const $ = (id) => document.getElementById(id);

const SIGN_URL = document.body.dataset.signUrl || "/tsb/sign";
const STATUS_URL = document.body.dataset.statusUrl || "/tsb/request/";
/* seconds the gateway holds a status request (capped by tsb_wait_max) */
const WAIT = Number(document.body.dataset.wait) || 20;
const TERMINAL = ["EXECUTED", "FAILED", "EXPIRED", "REJECTED", "CANCELLED"];

let policy = null;
let privateKey = null;      /* CryptoKey made here, or null */
let watching = null;        /* request id being followed */
let statusBase = null;      /* URL of that request's status */

/* where a refusal's reason belongs on the form */
const FIELD_OF = [
    [/extended_key_usage/, "eku"],
    [/key_usage/, "ku"],
    [/common_name|subject/, "cn"],
    [/\.san|names?$/, "sans"],
    [/\.key|curve|rsa|ed25519|signature_algorithm/, "keytype"],
    [/^csr\./, "csr"],
];

function text(el, s) { el.textContent = s == null ? "" : String(s); }

function clearErrors() {
    document.querySelectorAll(".error").forEach((e) => text(e, ""));
    document.querySelectorAll("[aria-invalid]").forEach(
        (e) => e.removeAttribute("aria-invalid"));
}

function mode() {
    return document.querySelector("input[name=mode]:checked").value;
}

/* a refusal next to the field it concerns, or above the button */
function showRefusal(err) {
    const reason = err.reason || err.error || "error";
    const msg = reason + ": " + (err.detail || err.message || "refused");
    let field = null;

    for (const [re, f] of FIELD_OF) {
        if (re.test(reason)) { field = f; break; }
    }
    if (mode() === "csr" && ["cn", "sans", "keytype"].includes(field)) {
        field = "csr";
    }
    const box = field && $(field + "-err");
    if (box && !box.closest("[hidden]")) {
        text(box, msg);
        const input = $(field);
        if (input) {
            input.setAttribute("aria-invalid", "true");
            input.focus();
        }
    } else {
        text($("form-err"), msg);
    }
}

async function json(res) {
    try { return await res.json(); } catch (e) { return {}; }
}

/* ---- the policy ---- */

function listItem(dl, term, value) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    text(dt, term);
    text(dd, value);
    dl.append(dt, dd);
}

function usageBoxes(container, allowed, defaults, name) {
    container.replaceChildren();
    for (const u of allowed) {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.name = name;
        box.value = u;
        box.checked = defaults.includes(u);
        label.append(box, " " + u.replaceAll("_", " ").toLowerCase());
        container.append(label);
    }
    if (allowed.length === 0) {
        text(container, "none allowed here");
    }
}

async function loadPolicy() {
    const res = await fetch(SIGN_URL, { headers: { Accept: "application/json" },
                                         credentials: "same-origin" });
    const body = await json(res);
    if (!res.ok) {
        text($("policy-state"), "The policy could not be read: "
             + (body.detail || res.status));
        return;
    }
    policy = body;

    const dl = $("policy-list");
    dl.replaceChildren();
    const names = policy.names.map((n) => n.pattern);
    listItem(dl, "Names", names.length ? names.join(", ")
                                       : "none: this location issues nothing "
                                         + "to you");
    listItem(dl, "Name types", policy.sanTypes.length
             ? policy.sanTypes.join(", ") : "common name only");
    const subject = (policy.subject || []).map((r) => r.attribute + " = "
        + r.values.map((v) => v.kind === "regex" ? "/" + v.value + "/"
                                                 : v.value).join(" or "));
    listItem(dl, "Other subject attributes",
             subject.length ? subject.join("; ") : "none: the name only");
    const keys = [];
    keys.push("RSA " + policy.keys.rsaMinBits + " bits or more");
    keys.push("EC " + policy.keys.ecCurves.join(", "));
    if (policy.keys.ed25519) { keys.push("Ed25519"); }
    listItem(dl, "Keys", keys.join("; "));
    listItem(dl, "Key usage", policy.keyUsage.allowed.join(", ") || "none");
    listItem(dl, "Extended key usage",
             policy.extendedKeyUsage.allowed.join(", ") || "none");
    listItem(dl, "CA certificates",
             policy.certificateAuthority.allowed ? "allowed" : "not allowed");
    if (policy.maxValidityDays) {
        listItem(dl, "Longest validity", policy.maxValidityDays + " days");
    }
    listItem(dl, "Signed with", (policy.signKeyName || "the key you name")
             + " (" + policy.signatureAlgorithm + ")");
    dl.hidden = false;
    text($("policy-state"), "");

    usageBoxes($("ku"), policy.keyUsage.allowed, policy.keyUsage.default,
               "ku");
    usageBoxes($("eku"), policy.extendedKeyUsage.allowed,
               policy.extendedKeyUsage.default, "eku");

    /* a name the client must use exactly is filled in for them */
    const exact = policy.names.find((n) => n.kind === "exact");
    if (exact && !$("cn").value) {
        $("cn").value = exact.pattern;
    } else if (!exact && policy.names.length) {
        $("cn").placeholder = policy.names[0].pattern.replace(/^\*/, "myhost");
    }
    if (!policy.keys.ecCurves.includes("P-256")) {
        $("keytype").value = "RSA-2048";
    }
}

/* ---- key and CSR in the browser ---- */

function keyAlgorithm() {
    if ($("keytype").value === "RSA-2048") {
        return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256",
                 modulusLength: 2048,
                 publicExponent: new Uint8Array([1, 0, 1]) };
    }
    return { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
}

async function makeCsr(cn, sans) {
    const alg = keyAlgorithm();
    const keys = await crypto.subtle.generateKey(alg, true,
                                                 ["sign", "verify"]);
    const names = [cn, ...sans.filter((s) => s !== cn)]
                  .map((value) => ({ type: "dns", value }));
    const csr = await X.Pkcs10CertificateRequestGenerator.create({
        name: [{ CN: [cn] }],
        keys,
        signingAlgorithm: alg,
        extensions: [new X.SubjectAlternativeNameExtension(names)],
    });
    privateKey = keys.privateKey;
    return csr.toString("pem");
}

function checked(name) {
    return Array.from(document.querySelectorAll(`input[name=${name}]:checked`))
        .map((b) => b.value);
}

async function submit(ev) {
    ev.preventDefault();
    clearErrors();
    let pem;

    if (mode() === "browser") {
        const cn = $("cn").value.trim();
        const sans = $("sans").value.split(/\s+/).filter(Boolean);
        if (!cn) {
            showRefusal({ reason: "csr.common_name",
                          detail: "enter the name the certificate is for" });
            return;
        }
        $("submit").disabled = true;
        text($("form-err"), "Creating the key\u2026");
        try {
            pem = await makeCsr(cn, sans);
        } catch (e) {
            $("submit").disabled = false;
            text($("form-err"), "The browser could not create the key: " + e);
            return;
        }
    } else {
        pem = $("csr").value.trim();
        privateKey = null;
        if (!pem) {
            showRefusal({ reason: "csr.empty", detail: "paste a CSR" });
            return;
        }
    }

    const envelope = { signCertificateRequest: {
        certificateSigningRequest: pem,
        keyUsage: checked("ku"),
        extendedKeyUsage: checked("eku"),
    } };

    $("submit").disabled = true;
    text($("form-err"), "Sending\u2026");
    let res;
    try {
        res = await fetch(SIGN_URL, {
            method: "POST", credentials: "same-origin",
            headers: { "Content-Type": "application/json",
                       Accept: "application/json" },
            body: JSON.stringify(envelope),
        });
    } catch (e) {
        $("submit").disabled = false;
        text($("form-err"), "The gateway could not be reached: " + e);
        return;
    }
    const body = await json(res);
    $("submit").disabled = false;
    text($("form-err"), "");

    if (!res.ok || !body.signRequestId) {
        showRefusal(body.reason ? body
                    : { reason: "http." + res.status,
                        detail: body.message || res.statusText });
        return;
    }

    const loc = res.headers.get("Location");
    follow(body.signRequestId, loc);
}

/* ---- following a request ---- */

function fill(list, names) {
    list.replaceChildren();
    for (const n of names || []) {
        const li = document.createElement("li");
        text(li, n);
        list.append(li);
    }
    if (!names || names.length === 0) {
        const li = document.createElement("li");
        li.className = "none";
        text(li, "nobody");
        list.append(li);
    }
}

function showStatus(st) {
    const state = st.status || "UNKNOWN";
    const words = {
        PENDING: "Waiting for the approvers.",
        APPROVED: "Approved; the HSM is signing.",
        EXECUTED: "Issued.",
        REJECTED: "Rejected by an approver: no certificate was issued.",
        EXPIRED: "Expired before enough approvers agreed.",
        CANCELLED: "Cancelled.",
        FAILED: "The HSM could not sign it.",
    };
    text($("req-state"), words[state] || state);
    $("progress").dataset.status = state;
    fill($("approved"), st.approvedBy);
    fill($("pending"), st.notYetApprovedBy);
    $("rejected-box").hidden = !(st.rejectedBy && st.rejectedBy.length);
    fill($("rejected"), st.rejectedBy);
    $("cancel").hidden = TERMINAL.includes(state);
}

function follow(id, location) {
    watching = id;
    statusBase = location || (STATUS_URL + encodeURIComponent(id));
    const hash = "#request=" + encodeURIComponent(id);
    if (window.location.hash !== hash) {
        history.replaceState(null, "", hash);
    }
    text($("req-id"), id);
    $("progress").hidden = false;
    $("request").hidden = true;
    text($("req-state"), "Asking the gateway\u2026");
    poll(id, 0, undefined);
}

/*
 * One long poll at a time, live: each names the version of the status it
 * has (If-None-Match with the last ETag), and the gateway holds it until
 * the status is another one (an approval, a rejection, the certificate) or
 * WAIT seconds pass (304: nothing new, ask again).  The first look at a
 * request is a plain GET, so a reload shows it at once.  A waiting page
 * costs one request per change or per WAIT seconds, not a poll loop.
 */
async function poll(id, failures, etag) {
    if (watching !== id) { return; }
    const headers = { Accept: "application/json" };
    const waits = etag !== undefined && !failures;
    if (etag) { headers["If-None-Match"] = etag; }
    const started = Date.now();
    let res, st;
    try {
        res = await fetch(statusBase + (waits ? "?wait=" + WAIT : ""),
                          { headers, credentials: "same-origin",
                            cache: "no-store" });
        st = res.status === 304 ? {} : await json(res);
    } catch (e) {
        res = null;
    }
    if (watching !== id) { return; }

    if (res && (res.status === 304 || res.status === 200
                || res.status === 202)
        && (res.status === 304 || st.status)) {
        const tag = res.headers.get("ETag");
        const same = res.status === 304 || tag === etag;
        if (res.status !== 304) {
            showStatus(st);
            if (st.status === "EXECUTED") {
                return issued(id);
            }
            if (TERMINAL.includes(st.status)) { return; }
        }
        /*
         * Nothing new, at once: this gateway does not hold requests
         * (a location without tsb_cache ignores ?wait), so do not spin.
         */
        if (waits && same && Date.now() - started < 1000) {
            setTimeout(() => poll(id, 0, tag || etag), 5000);
            return;
        }
        return poll(id, 0, res.status === 304 ? etag : tag);
    }
    if (res && res.status >= 400 && res.status < 500 && res.status !== 429) {
        text($("req-state"), (st.reason || res.status) + ": "
             + (st.detail || st.message || "the request cannot be shown"));
        $("cancel").hidden = true;
        return;
    }
    /* the gateway or the TSB is away: try again, backing off */
    text($("req-state"), "The gateway did not answer; trying again\u2026");
    const delay = Math.min(30, 2 ** Math.min(failures, 5)) * 1000;
    setTimeout(() => poll(id, failures + 1, etag), delay);
}

async function cancel() {
    text($("cancel-err"), "");
    const res = await fetch(statusBase, { method: "DELETE",
                                          credentials: "same-origin" });
    if (!res.ok) {
        const b = await json(res);
        text($("cancel-err"), (b.reason || res.status) + ": "
             + (b.detail || b.message || "could not cancel"));
        return;
    }
    showStatus({ status: "CANCELLED" });
}

/* ---- the certificate ---- */

function hex(buf) {
    return Array.from(new Uint8Array(buf))
        .map((b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

async function issued(id) {
    const res = await fetch(statusBase + ".pem",
                            { credentials: "same-origin" });
    const pem = await res.text();
    if (!res.ok) {
        let b = {};
        try { b = JSON.parse(pem); } catch (e) { /* not JSON */ }
        text($("req-state"), (b.reason || res.status) + ": "
             + (b.detail || "the certificate cannot be served"));
        return;
    }
    const cert = new X.X509Certificate(pem);
    const dl = $("cert-info");
    dl.replaceChildren();
    listItem(dl, "Subject", cert.subject);
    const san = cert.getExtension(X.SubjectAlternativeNameExtension);
    if (san) {
        listItem(dl, "Names", san.names.toJSON()
                 .map((n) => n.type.toUpperCase() + ":" + n.value).join(", "));
    }
    listItem(dl, "Issuer", cert.issuer);
    listItem(dl, "Valid from", cert.notBefore.toISOString());
    listItem(dl, "Valid until", cert.notAfter.toISOString());
    listItem(dl, "Serial", cert.serialNumber);
    listItem(dl, "SHA-256 fingerprint",
             hex(await crypto.subtle.digest("SHA-256", cert.rawData)));

    $("dl-pem").href = statusBase + ".pem";
    $("dl-pem").download = id + ".pem";
    $("dl-der").href = statusBase + ".der";
    $("dl-der").download = id + ".der";
    $("dl-chain").href = statusBase + "/chain";
    $("dl-chain").download = id + "-chain.pem";
    text($("cert-pem"), pem);

    if (privateKey) {
        const pkcs8 = await crypto.subtle.exportKey("pkcs8", privateKey);
        const keyPem = X.PemConverter.encode(pkcs8, "PRIVATE KEY");
        const a = $("dl-key");
        a.href = URL.createObjectURL(new Blob([keyPem],
                                     { type: "application/x-pem-file" }));
        a.download = id + ".key.pem";
        a.hidden = false;
        $("key-warning").hidden = false;
    }

    const origin = window.location.origin;
    text($("curl-line"),
         "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
         + "-nodes -keyout key.pem -subj '/CN=" + cert.subject
             .replace(/^.*CN=([^,]*).*$/, "$1") + "' -out req.csr\n"
         + "curl --fail -H 'Content-Type: application/x-pem-file' "
         + "--data-binary @req.csr '" + origin + SIGN_URL
         + "?wait=600' -o cert.pem");
    $("result").hidden = false;
}

/* ---- wiring ---- */

function modeChanged() {
    const csr = mode() === "csr";
    $("csr-fields").hidden = !csr;
    $("browser-fields").hidden = csr;
    clearErrors();
}

document.querySelectorAll("input[name=mode]").forEach(
    (r) => r.addEventListener("change", modeChanged));
$("csr-file").addEventListener("change", async (ev) => {
    const f = ev.target.files[0];
    if (f) { $("csr").value = await f.text(); }
});
$("form").addEventListener("submit", submit);
$("cancel").addEventListener("click", cancel);

loadPolicy().catch((e) => text($("policy-state"),
                                "The policy could not be read: " + e));

const m = window.location.hash.match(/^#request=([A-Za-z0-9-]+)$/);
if (m) {
    follow(decodeURIComponent(m[1]), null);
}

})();
