// Package console is the web console every node serves at / on its HTTP
// listener: server-rendered html/template pages, its own small stylesheet
// and script, and the vendored htmx and uPlot (package third_party/web),
// all embedded in the binary, so that it works offline at an edge and no
// Node.js or bundler takes part in the build.
//
// The package owns the console's sessions, its security and its pages:
//
//   - Sign-in exchanges an API token (package auth) for a session: a random
//     id in an HTTP-only, SameSite=Strict cookie (Secure when the request
//     came over TLS) that expires with the session (Options.SessionLifetime).
//     The token itself stays in the server's memory, never in the cookie,
//     and is authenticated again on every request, so that revoking it ends
//     every session it opened at the next click. Roles and tenant binding
//     are the API's: a tenant-bound token sees only its tenant, and another
//     tenant's object is "not found".
//   - Every change (POST, PUT, PATCH, DELETE) needs the session's CSRF token,
//     in a form field or the X-CSRF-Token header that htmx sends on every
//     request (the layout sets hx-headers), and must come from this origin
//     (net/http's CrossOriginProtection on Sec-Fetch-Site and Origin, then
//     the Referer when a browser sent neither).
//   - Every response carries a Content-Security-Policy without inline
//     scripts or styles, X-Frame-Options, X-Content-Type-Options and
//     Referrer-Policy; pages are not cached. The embedded scripts and
//     stylesheets are revalidated by ETag and sent gzip-encoded to a
//     browser that takes it (compressed once, at start); pages are not
//     compressed, since they carry the CSRF token beside what the request
//     names (BREACH).
//   - A missing or expired session sends the browser to the sign-in page
//     with the page it was on in ?next= (local paths only), and back there
//     after signing in.
//
// Pages read and change the node only through its own HTTP API, in
// process (apicall.go): each request carries the session's token as a
// bearer token and goes through the API's handler, so that roles, tenant
// binding, validation, auditing and every message are the API's own; a
// form the API refuses is shown again with the API's message beside it.
// Sign-ins and sign-outs are audited (console.signed_in, .signed_out).
//
// The pages:
//
//   - Fleet (fleet.go): objects by tenant, status, kind, network profile,
//     hierarchy (two levels) and edge; devices online and offline from
//     package presence; messages accepted, rejected and refused per second
//     from the node's Prometheus registry (a uPlot chart); a search that
//     resolves a code, an IPv6 number or a DID; bulk import (import.go,
//     static/import.js) that sends a CSV in chunks of 200 rows and shows
//     each row's result as it comes, or the whole file without JavaScript.
//   - Device (pages.go, device.go, live.go): identity, certificate and
//     credential; telemetry with the model's units, a chart per numeric
//     property over a chosen range, and live values over server-sent
//     events (GET /objects/{code}/live: every Options.LiveEvery the latest
//     values as the signed-in user; at most 8 streams per session and
//     Options.MaxLiveStreams per node; ended by sign-out, revocation and
//     Close); the twin with an "edit desired" form from the thing model
//     (the version it was read at; a stale one shows the conflict and the
//     current state); a command form per action, the commands with their
//     events (refreshed while one is pending) and cancel; events and dead
//     letters; rotate, quarantine, reinstate and revoke behind a
//     confirmation page that works without JavaScript.
//   - Edges (edges.go, hub only): link, backlog per class against its
//     quota and the hub's marks, bytes and gap records; an edge's devices.
//   - Loops, approvals and alarms (loops.go, evidence.go, alarms.go):
//     definitions, versions, mode, kill switches (per loop and per site),
//     bypasses, the evidence timeline and one decision's story; the
//     approval queue (a vote on an edge's action is relayed to it); alarms
//     by severity with acknowledge, shelve and unshelve, and their history.
//   - Audit (audit.go, static/audit.js): entries with filters, the signed
//     tree head (its signature checked by the node), and an entry's
//     inclusion proof checked in the browser's own code: the leaf bytes,
//     the proof and the head's root are in data attributes, and audit.js
//     hashes the leaf (RFC 6962) and walks the proof (RFC 9162 §2.1.3.2),
//     with crypto.subtle where the browser has it and its own SHA-256
//     otherwise.
//   - Models (models.go): thing models, their versions (deprecate), and
//     the WoT Thing Description as a download.
//   - ML models (mlmodels.go, hub only): the registered versions of the
//     models loops take scores from, one version's document (inputs with
//     their training statistics, outputs, thresholds, budget, training),
//     digests and signature, and its ONNX bytes as a download; a
//     decision's page shows the model's version and scores. A version's
//     figures by node and its rollouts, deploy; the rollouts (rollouts.go):
//     a rollout's plan, each node's stage, every stage change with its
//     gate results, promote and roll back.
//   - Datasets and labels (datasets.go, hub only): dataset versions with
//     their quality scores, lineage and export, build a version, train a
//     model on one; the label queue (unlabelled windows, capture now); a
//     window's page with its summaries, a chart per property and the
//     label buttons.
//   - Demo (glance.go): what a program running the node (wanwu demo)
//     hands the console through ShowGlance: what runs, where to look
//     first, its latest status.
//
// Package consoletest is a browser-like client for tests; the browser
// tests (package cli) drive a real Chromium through chromedp.
package console
