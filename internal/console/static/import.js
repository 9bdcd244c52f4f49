// The import page's script: the chosen CSV file is read in the browser,
// split into chunks of rows (each with the header line), and the chunks are
// posted one after the other to POST /objects/import as text/csv, with the
// session's CSRF token and the offset of the chunk's lines in the file. The
// results fill the table as they return; "Stop" stops after the chunk in
// flight. Without this script the form posts the whole file.
(function () {
  "use strict";

  // records splits CSV text into records (RFC 4180: a quoted field may
  // hold commas and line breaks), each with its raw text and the line it
  // starts on; empty lines are skipped, as the hub's reader skips them.
  function records(text) {
    var out = [];
    var i = 0, n = text.length, line = 1;
    if (text.charCodeAt(0) === 0xfeff) {
      i = 1;
    }
    while (i < n) {
      var start = i, startLine = line, quoted = false, fieldStart = true;
      for (; i < n; i++) {
        var ch = text.charAt(i);
        if (quoted) {
          if (ch === "\"") {
            if (text.charAt(i + 1) === "\"") {
              i++;
            } else {
              quoted = false;
            }
          } else if (ch === "\n") {
            line++;
          }
          continue;
        }
        if (ch === "\n" || (ch === "\r" && text.charAt(i + 1) === "\n")) {
          break;
        }
        if (ch === "\"" && fieldStart) {
          quoted = true;
        }
        fieldStart = ch === ",";
      }
      var raw = text.slice(start, i);
      if (text.charAt(i) === "\r") {
        i++;
      }
      if (text.charAt(i) === "\n") {
        i++;
        line++;
      }
      if (raw !== "") {
        out.push({ raw: raw, line: startLine, lines: raw.split("\n").length });
      }
    }
    return out;
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) {
      e.textContent = text;
    }
    if (cls) {
      e.className = cls;
    }
    return e;
  }

  function csrfToken(form) {
    var input = form.querySelector("input[name='csrf']");
    return input ? input.value : "";
  }

  function setup(form) {
    if (form.getAttribute("data-ready") || !window.fetch || !window.File || !File.prototype.text) {
      return;
    }
    form.setAttribute("data-ready", "1");
    var chunkRows = parseInt(form.getAttribute("data-chunk-rows"), 10) || 200;
    var maxRows = parseInt(form.getAttribute("data-max-rows"), 10) || 100000;
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 64 << 20;
    var fileInput = form.querySelector("input[type='file']");
    var startButton = document.getElementById("import-start");
    var stopButton = document.getElementById("import-stop");
    var section = document.getElementById("import-progress");
    var bar = document.getElementById("import-bar");
    var count = document.getElementById("import-count");
    var errorBox = document.getElementById("import-error");
    var keysBox = document.getElementById("import-keys");
    var keysLink = document.getElementById("import-keys-link");
    var tbody = document.querySelector("#import-table tbody");
    var stopping = false;

    function fail(msg) {
      errorBox.textContent = msg;
      errorBox.hidden = false;
    }

    stopButton.addEventListener("click", function () {
      stopping = true;
      stopButton.disabled = true;
      count.textContent += " Stopping after the rows being imported now…";
    });

    form.addEventListener("submit", function (ev) {
      var file = fileInput.files && fileInput.files[0];
      if (!file) {
        return; // the browser's own check says to choose one
      }
      ev.preventDefault();
      run(file);
    });

    async function run(file) {
      var old = document.getElementById("import-result");
      if (old) {
        old.remove();
      }
      section.hidden = false;
      errorBox.hidden = true;
      keysBox.hidden = true;
      tbody.textContent = "";
      stopping = false;
      if (file.size > maxBytes) {
        fail("The file has " + file.size + " bytes; an import takes at most " + maxBytes + ".");
        return;
      }
      var recs = records(await file.text());
      if (recs.length < 1) {
        fail("The file is empty: it needs a header row and one row per object.");
        return;
      }
      var header = recs.shift();
      var total = recs.length;
      if (total > maxRows) {
        fail("The file has " + total + " rows; an import takes at most " + maxRows + ". Split it into smaller files.");
        return;
      }
      startButton.disabled = true;
      fileInput.disabled = true;
      stopButton.hidden = false;
      stopButton.disabled = false;
      bar.max = Math.max(total, 1);
      bar.value = 0;
      var done = 0, created = 0, unchanged = 0, errors = 0;
      var keys = [], ca = "";
      function progress() {
        bar.value = done;
        count.textContent = done + " of " + total + " rows done: " + created + " created, " + unchanged + " unchanged, " + errors + " errors.";
      }
      progress();
      for (var at = 0; at < total && !stopping; at += chunkRows) {
        var chunk = recs.slice(at, at + chunkRows);
        // The chunk's header takes its first lines: a row's line in the
        // chunk plus the offset is its line in the file.
        var offset = chunk[0].line - (header.lines + 1);
        var body = header.raw + "\n" + chunk.map(function (r) { return r.raw; }).join("\n") + "\n";
        var resp, answer;
        try {
          resp = await fetch("/objects/import?offset=" + offset, {
            method: "POST",
            credentials: "same-origin",
            headers: { "Content-Type": "text/csv", "Accept": "application/json", "X-CSRF-Token": csrfToken(form) },
            body: body
          });
          answer = (resp.headers.get("Content-Type") || "").indexOf("application/json") === 0 ? await resp.json() : null;
        } catch (e) {
          fail("The console could not be reached (" + e.message + "). Rows from line " + chunk[0].line + " on may or may not be registered; importing the file again is safe.");
          break;
        }
        if (!resp.ok || !answer || answer.error) {
          var msg = answer && answer.error ? answer.error.message : "the console answered " + resp.status + " " + resp.statusText + "; reload the page and try again";
          fail("Not imported from line " + chunk[0].line + " on: " + msg);
          break;
        }
        var frag = document.createDocumentFragment();
        (answer.rows || []).forEach(function (r) {
          var tr = el("tr", undefined, "result-" + r.result);
          tr.appendChild(el("td", String(r.line), "num"));
          var td = el("td");
          if (r.code && r.result !== "error") {
            var a = el("a");
            a.href = "/objects/" + r.code;
            a.appendChild(el("code", r.code));
            td.appendChild(a);
          } else if (r.code) {
            td.appendChild(el("code", r.code));
          }
          tr.appendChild(td);
          tr.appendChild(el("td", r.result));
          tr.appendChild(el("td", r.message || ""));
          frag.appendChild(tr);
        });
        tbody.appendChild(frag);
        created += answer.created;
        unchanged += answer.unchanged;
        errors += answer.errors;
        done += chunk.length;
        if (answer.keys && answer.keys.length) {
          keys = keys.concat(answer.keys);
          ca = answer.ca_certificate || ca;
          if (keysLink.href.indexOf("blob:") === 0) {
            URL.revokeObjectURL(keysLink.href);
          }
          keysLink.href = URL.createObjectURL(new Blob([JSON.stringify({ keys: keys, ca_certificate: ca }, null, 2)], { type: "application/json" }));
          keysLink.download = "wanwu-keys-" + new Date().toISOString().replace(/[:.]/g, "-") + ".json";
          keysBox.hidden = false;
        }
        progress();
        if (answer.stopped) {
          fail("The hub stopped the import: " + answer.stopped);
          break;
        }
      }
      if (stopping && done < total) {
        count.textContent = "Stopped: " + done + " of " + total + " rows done: " + created + " created, " + unchanged + " unchanged, " + errors + " errors. The rest of the file was not sent.";
      } else if (done === total) {
        count.textContent = "Done: " + total + " rows: " + created + " created, " + unchanged + " unchanged, " + errors + " errors.";
      }
      startButton.disabled = false;
      fileInput.disabled = false;
      stopButton.hidden = true;
    }
  }

  function init(root) {
    var form = root.querySelector ? root.querySelector("#import-form") : null;
    if (form) {
      setup(form);
    }
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (e) { init(e.target); });
})();
