// Ridgeline dashboard: live updates and forms. Talks to the /v1 API with the session cookie and
// echoes the CSRF cookie in X-CSRF-Token on every state-changing request.
(function () {
  "use strict";

  var TERMINAL = ["succeeded", "failed", "cancelled"];
  var POLL_MS = 1500;

  function isTerminal(status) {
    return TERMINAL.indexOf(status) >= 0;
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function csrfHeaders(headers) {
    var out = headers || {};
    var token = cookie("ridgeline_csrf");
    if (token) out["X-CSRF-Token"] = token;
    return out;
  }

  function problemText(problem, status) {
    if (!problem || typeof problem !== "object") return "The request failed (HTTP " + status + ").";
    var lines = [problem.detail || problem.title || "The request failed (HTTP " + status + ")."];
    (problem.errors || []).forEach(function (e) {
      lines.push("• " + (e.field ? e.field + ": " : "") + (e.message || ""));
    });
    return lines.join("\n");
  }

  // fetch with the cookie, the CSRF header and JSON/problem+json handling.
  function api(method, url, body) {
    var headers = { Accept: "application/json" };
    var init = { method: method, credentials: "same-origin", headers: headers };
    if (method !== "GET") csrfHeaders(headers);
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (res) {
      var type = res.headers.get("content-type") || "";
      var parsed = type.indexOf("json") >= 0 ? res.json() : Promise.resolve(null);
      return parsed.then(function (data) {
        if (res.status === 401 && method === "GET") {
          // The session ended (expired, signed out elsewhere, key revoked): sign in again.
          window.location.href =
            "/signin?next=" + encodeURIComponent(window.location.pathname + window.location.search);
        }
        if (!res.ok) {
          var err = new Error(problemText(data, res.status));
          err.status = res.status;
          throw err;
        }
        return { status: res.status, data: data };
      });
    });
  }

  function showError(message) {
    var box = document.querySelector('[data-role="form-error"]');
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function setStatus(scope, status) {
    var badge = scope.querySelector('[data-role="status"]');
    if (badge && badge.textContent !== status) {
      badge.textContent = status;
      badge.className = "badge badge-" + status;
    }
    scope.setAttribute("data-status", status);
  }

  function setProgress(scope, fraction) {
    var bar = scope.querySelector('[data-role="progress"]');
    var text = scope.querySelector('[data-role="progress-text"]');
    var pct = Math.max(0, Math.min(100, Math.round((Number(fraction) || 0) * 100)));
    if (bar) bar.value = pct;
    if (text) text.textContent = pct + "%";
  }

  function fmt(value) {
    if (value === null || value === undefined || value === "") return "—";
    var n = Number(value);
    return isFinite(n) ? String(Number(n.toPrecision(4))) : String(value);
  }

  // -- lists: light polling of the API while anything is still queued or running -------------
  function initList(table, endpoint, idAttr) {
    var rows = {};
    table.querySelectorAll("tr[" + idAttr + "]").forEach(function (row) {
      rows[row.getAttribute(idAttr)] = row;
    });
    function active() {
      return Object.keys(rows).some(function (id) {
        return !isTerminal(rows[id].getAttribute("data-status"));
      });
    }
    function tick() {
      if (!active()) return;
      api("GET", endpoint)
        .then(function (res) {
          (res.data.items || []).forEach(function (item) {
            var row = rows[item.id];
            if (!row) return;
            setStatus(row, item.status);
            setProgress(row, item.progress);
          });
          setTimeout(tick, POLL_MS);
        })
        .catch(function (err) {
          if (err.status !== 401) setTimeout(tick, POLL_MS * 4);
        });
    }
    setTimeout(tick, POLL_MS);
  }

  // -- the live loss chart: an SVG drawn here from the epochs the event stream brings --------
  var SVG_NS = "http://www.w3.org/2000/svg";
  var CHART = { width: 640, height: 320, left: 56, right: 150, top: 16, bottom: 40 };

  function svgNode(name, attrs, text) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs).forEach(function (key) {
      node.setAttribute(key, attrs[key]);
    });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function liveChart(svg) {
    var losses = {}; // epoch -> {train, val}; the stream replays from the start, so keyed

    function series(epochs, key) {
      return epochs.filter(function (e) {
        return typeof losses[e][key] === "number" && isFinite(losses[e][key]);
      });
    }

    function draw() {
      var epochs = Object.keys(losses).map(Number).sort(function (a, b) {
        return a - b;
      });
      var values = [];
      epochs.forEach(function (e) {
        ["train", "val"].forEach(function (k) {
          if (typeof losses[e][k] === "number" && isFinite(losses[e][k])) values.push(losses[e][k]);
        });
      });
      if (!values.length) return;
      var c = CHART;
      var x0 = epochs[0], x1 = Math.max(epochs[epochs.length - 1], x0 + 1);
      var y0 = Math.min.apply(null, values), y1 = Math.max.apply(null, values);
      if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
      var plotW = c.width - c.left - c.right, plotH = c.height - c.top - c.bottom;
      function px(e) { return c.left + ((e - x0) / (x1 - x0)) * plotW; }
      function py(v) { return c.top + (1 - (v - y0) / (y1 - y0)) * plotH; }
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      svg.appendChild(svgNode("rect", { x: c.left, y: c.top, width: plotW, height: plotH, "class": "frame" }));
      [y0, (y0 + y1) / 2, y1].forEach(function (v) {
        svg.appendChild(svgNode("line", { x1: c.left, x2: c.left + plotW, y1: py(v), y2: py(v), "class": "grid" }));
        svg.appendChild(svgNode("text", { x: c.left - 6, y: py(v) + 4, "text-anchor": "end" }, fmt(v)));
      });
      [x0, x1].forEach(function (e) {
        svg.appendChild(svgNode("text", { x: px(e), y: c.top + plotH + 16, "text-anchor": "middle" }, String(e)));
      });
      svg.appendChild(svgNode("text", { x: c.left + plotW / 2, y: c.height - 6, "text-anchor": "middle" }, "epoch"));
      [["train", "train", "5 4"], ["val", "validation", ""]].forEach(function (s, i) {
        var points = series(epochs, s[0]).map(function (e) {
          return px(e).toFixed(1) + "," + py(losses[e][s[0]]).toFixed(1);
        });
        var cls = "line " + s[0];
        svg.appendChild(svgNode("polyline", { points: points.join(" "), "class": cls, "stroke-dasharray": s[2] }));
        var ly = c.top + 14 + i * 18;
        svg.appendChild(svgNode("line", { x1: c.width - c.right + 12, x2: c.width - c.right + 36, y1: ly - 4, y2: ly - 4, "class": cls, "stroke-dasharray": s[2] }));
        svg.appendChild(svgNode("text", { x: c.width - c.right + 42, y: ly }, s[1]));
      });
      var last = epochs[epochs.length - 1];
      svg.appendChild(svgNode("text", { x: c.width - c.right + 12, y: c.top + 64, "data-role": "live-epoch" }, "epoch " + last));
      svg.setAttribute("data-epoch", String(last));
    }

    return {
      add: function (data) {
        if (typeof data.epoch !== "number") return;
        losses[data.epoch] = { train: data.train_loss, val: data.val_loss };
        draw();
      },
    };
  }

  // -- a job: follow its Server-Sent Events; once it ends, show the final page in place -------
  function swapInPage(url) {
    // The results page replaces <main> without a reload, so the chart never blanks.
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var main = fresh.querySelector("main");
        if (!main) throw new Error("no <main> in the page");
        document.querySelector("main").replaceWith(document.importNode(main, true));
        document.title = fresh.title;
        init();
      })
      .catch(function () {
        window.location.reload();
      });
  }

  function initJob() {
    var root = document.getElementById("job");
    if (!root) return;
    var id = root.getAttribute("data-job-id");
    var totalEpochs = root.getAttribute("data-epochs");
    var svg = document.querySelector('[data-role="live-chart"]');
    var chart = svg ? liveChart(svg) : null;
    var best = 0;

    function showEpoch(data) {
      if (!chart) return;
      chart.add(data);
      var figure = document.querySelector('[data-role="live-figure"]');
      if (figure) figure.hidden = false;
      var waitNote = document.querySelector('[data-role="loss-curve-wait"]');
      if (waitNote) waitNote.hidden = true;
    }

    function finished() {
      swapInPage(window.location.href);
    }

    if (isTerminal(root.getAttribute("data-status"))) return;

    if (!window.EventSource) {
      pollJob(id, root, finished);
      return;
    }
    var source = new EventSource("/v1/jobs/" + encodeURIComponent(id) + "/events");
    source.addEventListener("status", function (e) {
      var data = JSON.parse(e.data);
      if (!data.status) return;
      setStatus(root, data.status);
      if (isTerminal(data.status)) {
        source.close();
        finished();
      }
    });
    source.addEventListener("progress", function (e) {
      var data = JSON.parse(e.data);
      // The stream replays from the job's start: never move the bar backwards.
      if (typeof data.progress === "number" && data.progress >= best) {
        best = data.progress;
        setProgress(root.parentNode, data.progress);
      }
    });
    source.addEventListener("epoch", function (e) {
      var data = JSON.parse(e.data);
      var line = document.querySelector('[data-role="epoch-line"]');
      if (line) {
        line.textContent =
          "epoch " + data.epoch + (totalEpochs ? "/" + totalEpochs : "") +
          " · train loss " + fmt(data.train_loss) + " · validation loss " + fmt(data.val_loss);
      }
      showEpoch(data);
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) pollJob(id, root, finished);
    };
  }

  function pollJob(id, root, done) {
    function tick() {
      api("GET", "/v1/jobs/" + encodeURIComponent(id))
        .then(function (res) {
          setStatus(root, res.data.status);
          setProgress(root.parentNode, res.data.progress);
          if (isTerminal(res.data.status)) done();
          else setTimeout(tick, POLL_MS);
        })
        .catch(function (err) {
          if (err.status !== 401) setTimeout(tick, POLL_MS * 4);
        });
    }
    tick();
  }

  // -- a sweep: poll; reload when it ends or a trial adds a leaderboard row -----------------
  function initSweep() {
    var root = document.getElementById("sweep");
    if (!root || isTerminal(root.getAttribute("data-status"))) return;
    var id = root.getAttribute("data-sweep-id");
    var rowsNow = Number(root.getAttribute("data-finished-rows") || 0);
    function tick() {
      api("GET", "/v1/sweeps/" + encodeURIComponent(id))
        .then(function (res) {
          var s = res.data;
          setStatus(root, s.status);
          setProgress(root.parentNode, s.progress);
          var finishedRows = (s.leaderboard || []).filter(function (r) {
            return r.mean !== null;
          }).length;
          if (isTerminal(s.status) || finishedRows !== rowsNow) window.location.reload();
          else setTimeout(tick, POLL_MS * 1.5);
        })
        .catch(function (err) {
          if (err.status !== 401) setTimeout(tick, POLL_MS * 4);
        });
    }
    setTimeout(tick, POLL_MS);
  }

  // -- cancel buttons ------------------------------------------------------------------------
  function initCancel() {
    document.querySelectorAll('[data-action="cancel"]').forEach(function (button) {
      button.addEventListener("click", function () {
        button.disabled = true;
        button.textContent = "Cancelling…";
        api("POST", button.getAttribute("data-url"))
          .then(function () {
            showError("");
          })
          .catch(function (err) {
            button.disabled = false;
            button.textContent = "Cancel";
            showError(err.message);
          });
      });
    });
  }

  // -- upload a dataset ----------------------------------------------------------------------
  function initUpload() {
    var form = document.getElementById("upload-form");
    if (!form) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = new FormData(form);
      if (!String(data.get("name") || "").trim()) data.delete("name");
      var button = form.querySelector("button");
      button.disabled = true;
      button.textContent = "Uploading…";
      showError("");
      api("POST", form.getAttribute("data-endpoint"), data)
        .then(function (res) {
          window.location.href = "/datasets?uploaded=" + encodeURIComponent(res.data.id);
        })
        .catch(function (err) {
          button.disabled = false;
          button.textContent = "Upload";
          showError(err.message);
        });
    });
  }

  // -- the forms that start training: a dataset, its target, a model kind -------------------
  function guessTarget(columns) {
    var names = columns.map(function (c) {
      return c.name;
    });
    var guesses = ["target", "label", "y", "class", "outcome"];
    for (var i = 0; i < guesses.length; i++) {
      for (var j = 0; j < names.length; j++) {
        if (names[j].toLowerCase() === guesses[i]) return names[j];
      }
    }
    return names[names.length - 1];
  }

  // The dataset picker fills the target choices; `show` says whether a field is shown for the
  // chosen kind (data-needs: the kind's fields) or some other rule the form passes in.
  function trainingForm(form, show) {
    var datasets = JSON.parse(document.getElementById("datasets-data").textContent);
    var byId = {};
    datasets.forEach(function (d) {
      byId[d.id] = d;
    });
    var el = function (name) {
      return form.elements.namedItem(name);
    };

    function fillTargets() {
      var dataset = byId[el("dataset_id").value];
      var select = el("target");
      select.textContent = "";
      if (!dataset) return;
      var guess = guessTarget(dataset.columns);
      dataset.columns.forEach(function (c) {
        var option = document.createElement("option");
        option.value = c.name;
        option.textContent = c.name + " (" + c.dtype + ")";
        option.selected = c.name === guess;
        select.appendChild(option);
      });
    }

    function toggle() {
      var kindOption = el("kind").selectedOptions[0];
      var fields = String((kindOption && kindOption.getAttribute("data-fields")) || "").split(" ");
      form.querySelectorAll("[data-needs], [data-show], [data-penalty]").forEach(function (node) {
        var shown = node.hasAttribute("data-needs")
          ? fields.indexOf(node.getAttribute("data-needs")) >= 0
          : show(node);
        node.hidden = !shown;
        if (node.tagName !== "LABEL") node.disabled = node.hidden;
      });
    }

    el("dataset_id").addEventListener("change", fillTargets);
    el("kind").addEventListener("change", toggle);
    return {
      el: el,
      toggle: toggle,
      used: function (name) {
        return !el(name).disabled;
      },
      layers: function () {
        return String(el("hidden_layers").value)
          .split(",")
          .map(function (s) {
            return s.trim();
          })
          .filter(Boolean)
          .map(Number);
      },
    };
  }

  function numbers(text) {
    return String(text || "")
      .split(",")
      .map(function (s) {
        return s.trim();
      })
      .filter(Boolean)
      .map(Number);
  }

  function submitTo(form, body, page) {
    var button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    api("POST", form.getAttribute("data-endpoint"), body)
      .then(function (res) {
        window.location.href = page + encodeURIComponent(res.data.id);
      })
      .catch(function (err) {
        button.disabled = false;
        showError(err.message);
      });
  }

  // -- start a job ---------------------------------------------------------------------------
  function initJobForm() {
    var form = document.getElementById("job-form");
    if (!form) return;
    var f = trainingForm(form, function (node) {
      return node.getAttribute("data-show") === f.el("penalty").value;
    });
    var el = f.el;
    var used = f.used;
    function toggle() {
      f.toggle();
      el("strength").disabled = el("penalty").value === "none";
    }
    el("kind").addEventListener("change", toggle);
    el("penalty").addEventListener("change", toggle);
    toggle();

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      showError("");
      var kind = el("kind").value;
      var penalty = el("penalty").value;
      var body = {
        dataset_id: el("dataset_id").value,
        target: el("target").value,
        model: { kind: kind },
        regularization: { penalty: penalty },
      };
      if (penalty !== "none") body.regularization.strength = Number(el("strength").value || 0);
      if (penalty === "elasticnet") body.regularization.l1_ratio = Number(el("l1_ratio").value);
      // Only the inputs the chosen kind takes are enabled (see toggle).
      if (used("hidden_layers")) body.model.hidden_layers = f.layers();
      if (used("epochs")) body.model.epochs = Number(el("epochs").value);
      if (used("dropout")) body.regularization.dropout = Number(el("dropout").value || 0);
      var patience = String(el("patience").value || "").trim();
      if (used("patience") && patience) {
        body.regularization.early_stopping = { patience: Number(patience) };
      }
      var name = String(el("name").value || "").trim();
      if (name) body.name = name;
      submitTo(form, body, "/jobs/");
    });
  }

  // -- start a sweep -------------------------------------------------------------------------
  function initSweepForm() {
    var form = document.getElementById("sweep-form");
    if (!form) return;
    function penalties() {
      return Array.prototype.filter
        .call(form.querySelectorAll('input[name="penalty"]'), function (box) {
          return box.checked;
        })
        .map(function (box) {
          return box.value;
        });
    }
    var f = trainingForm(form, function (node) {
      return penalties().indexOf(node.getAttribute("data-penalty")) >= 0;
    });
    var el = f.el;
    form.querySelectorAll('input[name="penalty"]').forEach(function (box) {
      box.addEventListener("change", f.toggle);
    });
    el("cv").addEventListener("change", function () {
      var folds = el("cv").value === "folds";
      el("cv_value").value = folds ? "5" : "0.2";
      el("cv_value").step = folds ? "1" : "any";
    });
    f.toggle();

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      showError("");
      var chosen = penalties();
      if (!chosen.length) {
        showError("Choose at least one penalty to search.");
        return;
      }
      var body = {
        dataset_id: el("dataset_id").value,
        target: el("target").value,
        model: { kind: el("kind").value },
        search: {
          penalty: chosen,
          strength: {
            min: Number(el("strength_min").value),
            max: Number(el("strength_max").value),
            num: Number(el("strength_num").value),
            scale: "log",
          },
        },
        cv: {},
        metric: el("metric").value,
        refit: el("refit").checked,
      };
      body.cv[el("cv").value] = Number(el("cv_value").value);
      if (f.used("l1_ratio")) body.search.l1_ratio = numbers(el("l1_ratio").value);
      if (f.used("hidden_layers")) body.model.hidden_layers = f.layers();
      if (f.used("epochs")) body.model.epochs = Number(el("epochs").value);
      if (f.used("dropout")) body.search.dropout = numbers(el("dropout").value);
      var name = String(el("name").value || "").trim();
      if (name) body.name = name;
      submitTo(form, body, "/sweeps/");
    });
  }

  // -- register a succeeded job as a model version (creating the model when it is new) -------
  function initRegister() {
    var show = document.querySelector('[data-action="show-register"]');
    var section = document.getElementById("register");
    var form = document.getElementById("register-form");
    if (!show || !section || !form) return;
    show.addEventListener("click", function () {
      section.hidden = false;
      form.elements.namedItem("model").focus();
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      showError("");
      var name = String(form.elements.namedItem("model").value || "").trim();
      var description = String(form.elements.namedItem("description").value || "").trim();
      var body = { job_id: form.getAttribute("data-job-id") };
      if (description) body.description = description;
      var button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      var base = "/v1/models/" + encodeURIComponent(name);
      api("POST", "/v1/models", { name: name })
        .catch(function (err) {
          if (err.status !== 409) throw err; // it exists already: add a version to it
        })
        .then(function () {
          return api("POST", base + "/versions", body);
        })
        .then(function (res) {
          window.location.href =
            "/models/" + encodeURIComponent(name) + "?version=" + res.data.version + "#card";
        })
        .catch(function (err) {
          button.disabled = false;
          showError(err.message);
        });
    });
  }

  // -- point an alias at a version ------------------------------------------------------------
  function initAliasForm() {
    var form = document.getElementById("alias-form");
    if (!form) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      showError("");
      var alias = String(form.elements.namedItem("alias").value || "").trim();
      var version = Number(form.elements.namedItem("version").value);
      var button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      api("PUT", form.getAttribute("data-endpoint") + encodeURIComponent(alias), {
        version: version,
      })
        .then(function () {
          window.location.reload();
        })
        .catch(function (err) {
          button.disabled = false;
          showError(err.message);
        });
    });
  }

  function init() {
    var jobs = document.querySelector('table[data-live="jobs"]');
    if (jobs) initList(jobs, "/v1/jobs?limit=100", "data-job-id");
    var sweeps = document.querySelector('table[data-live="sweeps"]');
    if (sweeps) initList(sweeps, "/v1/sweeps?limit=100", "data-sweep-id");
    initJob();
    initSweep();
    initCancel();
    initUpload();
    initJobForm();
    initSweepForm();
    initRegister();
    initAliasForm();
    // Until now a click would have sent these forms the browser's way (a GET of this page).
    document.querySelectorAll("button[data-scripted]").forEach(function (button) {
      button.disabled = false;
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
