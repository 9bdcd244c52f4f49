// The audit pages' script: it checks, in the browser's own code, that an
// audit entry is in the tree a signed tree head commits to. The page gives
// the entry's leaf bytes, its index, the inclusion proof's hashes and the
// head's size and root in data-* attributes of [data-audit-verify]; this
// script hashes the leaf itself (RFC 6962: SHA-256 of 0x00 || leaf), walks
// the proof with the algorithm of RFC 9162 §2.1.3.2 (interior nodes are
// SHA-256 of 0x01 || left || right) and compares the result with the root.
// No hash the node computed is trusted but the root, whose signature the
// node checked. SHA-256 is crypto.subtle's where the browser offers it (on
// https and localhost only), else the small implementation below, which
// checks itself against the FIPS 180-2 vectors before it is used.
(function () {
  "use strict";

  // ---- SHA-256 (FIPS 180-4), for pages served over plain http ----

  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];

  function sha256Sync(msg) {
    var h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var len = msg.length;
    // Padding: 0x80, zeros, the length in bits as a 64-bit big-endian number.
    var total = Math.ceil((len + 9) / 64) * 64;
    var m = new Uint8Array(total);
    m.set(msg);
    m[len] = 0x80;
    var bits = len * 8;
    var hi = Math.floor(bits / 0x100000000);
    var lo = bits >>> 0;
    m[total - 8] = (hi >>> 24) & 0xff;
    m[total - 7] = (hi >>> 16) & 0xff;
    m[total - 6] = (hi >>> 8) & 0xff;
    m[total - 5] = hi & 0xff;
    m[total - 4] = (lo >>> 24) & 0xff;
    m[total - 3] = (lo >>> 16) & 0xff;
    m[total - 2] = (lo >>> 8) & 0xff;
    m[total - 1] = lo & 0xff;
    var w = new Array(64);
    for (var off = 0; off < total; off += 64) {
      var i;
      for (i = 0; i < 16; i++) {
        var j = off + i * 4;
        w[i] = ((m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3]) >>> 0;
      }
      for (i = 16; i < 64; i++) {
        var x = w[i - 15], y = w[i - 2];
        var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
      for (i = 0; i < 64; i++) {
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var ch = (e & f) ^ (~e & g);
        var t1 = (k + S1 + ch + K[i] + w[i]) >>> 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var maj = (a & b) ^ (a & c) ^ (b & c);
        var t2 = (S0 + maj) >>> 0;
        k = g; g = f; f = e; e = (d + t1) >>> 0;
        d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] = (h[0] + a) >>> 0; h[1] = (h[1] + b) >>> 0; h[2] = (h[2] + c) >>> 0; h[3] = (h[3] + d) >>> 0;
      h[4] = (h[4] + e) >>> 0; h[5] = (h[5] + f) >>> 0; h[6] = (h[6] + g) >>> 0; h[7] = (h[7] + k) >>> 0;
    }
    var out = new Uint8Array(32);
    for (var n = 0; n < 8; n++) {
      out[n * 4] = h[n] >>> 24;
      out[n * 4 + 1] = (h[n] >>> 16) & 0xff;
      out[n * 4 + 2] = (h[n] >>> 8) & 0xff;
      out[n * 4 + 3] = h[n] & 0xff;
    }
    return out;
  }

  function hex(b) {
    var s = "";
    for (var i = 0; i < b.length; i++) {
      s += (b[i] < 16 ? "0" : "") + b[i].toString(16);
    }
    return s;
  }

  function ascii(s) {
    var b = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) {
      b[i] = s.charCodeAt(i);
    }
    return b;
  }

  // FIPS 180-2 appendix B: "abc", the two-block message, and the empty
  // string. The fallback is used only if it gives these.
  var fallbackOK = (function () {
    try {
      return hex(sha256Sync(ascii("abc"))) === "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" &&
        hex(sha256Sync(ascii("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) === "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" &&
        hex(sha256Sync(new Uint8Array(0))) === "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    } catch (e) {
      return false;
    }
  })();

  var subtle = window.crypto && window.crypto.subtle;

  // sha256 returns a promise of the digest.
  function sha256(bytes) {
    if (subtle && subtle.digest) {
      return subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
    }
    if (!fallbackOK) {
      return Promise.reject(new Error("this browser offers no SHA-256 (crypto.subtle needs https or localhost) and the built-in one failed its self-test"));
    }
    return Promise.resolve(sha256Sync(bytes));
  }

  function concat(prefix, a, b) {
    var out = new Uint8Array(1 + a.length + (b ? b.length : 0));
    out[0] = prefix;
    out.set(a, 1);
    if (b) {
      out.set(b, 1 + a.length);
    }
    return out;
  }

  function unbase64(s) {
    var bin = window.atob(s);
    var b = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      b[i] = bin.charCodeAt(i);
    }
    return b;
  }

  function equal(a, b) {
    if (a.length !== b.length) {
      return false;
    }
    for (var i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        return false;
      }
    }
    return true;
  }

  // verifyInclusion is RFC 9162 §2.1.3.2. Indexes stay below 2^53, so they
  // are halved with arithmetic, not 32-bit shifts. It resolves to the
  // computed root, or rejects with the reason.
  function verifyInclusion(leaf, index, size, proof, root) {
    if (!(index < size)) {
      return Promise.reject(new Error("index " + index + " is not below the tree size " + size));
    }
    return sha256(concat(0x00, leaf)).then(function (leafHash) {
      var fn = index, sn = size - 1, r = leafHash, i = 0;
      function step() {
        if (i === proof.length) {
          if (sn !== 0) {
            return Promise.reject(new Error("the proof has " + proof.length + " hashes, too few for entry " + index + " in a tree of size " + size));
          }
          if (!equal(r, root)) {
            return Promise.reject(new Error("the proof leads to root " + hex(r) + ", but the signed head's root is " + hex(root)));
          }
          return Promise.resolve(r);
        }
        var p = proof[i++];
        if (p.length !== 32) {
          return Promise.reject(new Error("proof hash " + i + " is " + p.length + " bytes, not 32"));
        }
        if (sn === 0) {
          return Promise.reject(new Error("the proof has " + proof.length + " hashes, too many for entry " + index + " in a tree of size " + size));
        }
        var next;
        if (fn % 2 === 1 || fn === sn) {
          next = sha256(concat(0x01, p, r)).then(function (h) {
            if (fn % 2 === 0) {
              while (fn % 2 === 0 && fn !== 0) {
                fn = Math.floor(fn / 2);
                sn = Math.floor(sn / 2);
              }
            }
            return h;
          });
        } else {
          next = sha256(concat(0x01, r, p));
        }
        return next.then(function (h) {
          r = h;
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
          return step();
        });
      }
      return step();
    });
  }

  function verify(el) {
    var out = el.querySelector(".verify-result");
    var say = function (ok, text) {
      out.textContent = text;
      out.className = "verify-result " + (ok ? "verified" : "failed");
    };
    var index, size, leaf, root, proof;
    try {
      index = Number(el.getAttribute("data-index"));
      size = Number(el.getAttribute("data-size"));
      leaf = unbase64(el.getAttribute("data-leaf"));
      root = unbase64(el.getAttribute("data-root"));
      var ps = (el.getAttribute("data-proof") || "").split(" ").filter(function (s) { return s !== ""; });
      proof = ps.map(unbase64);
    } catch (e) {
      say(false, "not verified: the page's proof data could not be read (" + e.message + ")");
      return;
    }
    if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size)) {
      say(false, "not verified: the index or size is not a whole number");
      return;
    }
    // The leaf must be the entry it claims to be: its own index member.
    var text;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(leaf);
      var parsed = JSON.parse(text);
      if (parsed.index !== index) {
        say(false, "not verified: the leaf is entry " + parsed.index + ", not entry " + index);
        return;
      }
    } catch (e) {
      say(false, "not verified: the leaf is not the JSON of an entry (" + e.message + ")");
      return;
    }
    var lt = el.querySelector("[data-leaf-text]");
    if (lt) {
      lt.textContent = text;
    }
    say(true, "Checking entry " + index + "…");
    out.className = "verify-result";
    verifyInclusion(leaf, index, size, proof, root).then(function () {
      say(true, "verified: entry " + index + " is in the log of size " + size + " with root " + hex(root) +
        (subtle && subtle.digest ? "" : " (hashed with this page's own SHA-256: the page is not served over https)"));
    }, function (err) {
      say(false, "NOT verified: " + err.message);
    });
  }

  var done = new WeakSet();

  function init(root) {
    var els = [];
    if (root.matches && root.matches("[data-audit-verify]")) {
      els.push(root);
    }
    root.querySelectorAll("[data-audit-verify]").forEach(function (el) { els.push(el); });
    els.forEach(function (el) {
      if (!done.has(el)) {
        done.add(el);
        verify(el);
      }
    });
  }

  // Exposed for the browser tests: the digest and the proof check.
  window.wanwuAudit = { sha256Sync: sha256Sync, fallbackOK: fallbackOK, verifyInclusion: verifyInclusion, hex: hex };

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (e) { init(e.target); });
})();
