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
//     Referrer-Policy; pages are not cached.
//   - A missing or expired session sends the browser to the sign-in page
//     with the page it was on in ?next= (local paths only), and back there
//     after signing in.
//
// The pages of this increment are the fleet overview (objects by tenant,
// status, kind, network profile and edge; devices online and offline from
// package presence; messages accepted and rejected per second from the
// node's Prometheus registry), the search that resolves a code, an IPv6
// number or a DID, and an object's identity page.
package console
