/* Chapter 9's live generator: prompt, temperature / top-k / top-p, a visible seed, and
 * streamed characters you can click to see the distribution each one was drawn from.
 *
 * Everything runs in this page: model.js computes the logits, sampling.js filters them
 * exactly as minigpt.next_token_probs does and draws with a seeded RNG.
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};
  MG.widgets = MG.widgets || {};
  var el = function (t, a, c) { return MG.el(t, a, c); };
  var SHOWN = 12;                                   // bars in the distribution panel

  function slider(label, attrs) {
    var input = el("input", Object.assign({type: "range", "data-mg": attrs.key}, attrs.range));
    var value = el("output", {"data-mg": attrs.key + "-value", "class": "mg-value"});
    var id = "mg-" + attrs.key + "-" + Math.random().toString(36).slice(2, 8);
    input.id = id;
    return {row: el("div", {"class": "mg-row"}, [el("label", {"for": id, text: label}), input, value]),
            input: input, value: value};
  }

  MG.widgets.generator = function (node, model, config) {
    var V = model.config.vocab_size, blockSize = model.config.block_size, tok = model.tokenizer;
    var header = el("div", {"class": "mg-caption", "data-mg": "model", text: "Model: " + MG.describeModel(model)});
    var promptId = "mg-prompt-" + Math.random().toString(36).slice(2, 8);
    var prompt = el("textarea", {id: promptId, rows: "3", "data-mg": "prompt", maxlength: String(blockSize - 1),
                                 spellcheck: "false"});
    prompt.value = config.prompt;
    var promptError = el("div", {"class": "mg-error", "data-mg": "prompt-error", role: "alert"});
    var T = slider("temperature", {key: "temperature", range: {min: "0", max: "2", step: "0.05"}});
    var K = slider("top-k", {key: "top-k", range: {min: "1", max: String(V), step: "1"}});
    var P = slider("top-p", {key: "top-p", range: {min: "0.05", max: "1", step: "0.01"}});
    T.input.value = String(config.temperature);
    K.input.value = String(config.top_k === null ? V : config.top_k);
    P.input.value = String(config.top_p === null ? 1 : config.top_p);
    var seedId = "mg-seed-" + Math.random().toString(36).slice(2, 8);
    var seed = el("input", {id: seedId, type: "number", min: "0", max: "4294967295", step: "1",
                            "data-mg": "seed", "class": "mg-seed"});
    seed.value = String(config.seed);
    var newSeed = el("button", {type: "button", "data-mg": "new-seed", text: "new seed"});
    var lengthId = "mg-length-" + Math.random().toString(36).slice(2, 8);
    var length = el("input", {id: lengthId, type: "number", min: "1", max: String(blockSize - 1), step: "1",
                              "data-mg": "length", "class": "mg-seed"});
    length.value = String(config.length);
    var go = el("button", {type: "button", "class": "mg-primary", "data-mg": "generate", text: "Generate"});
    var stop = el("button", {type: "button", "data-mg": "stop", text: "Stop", disabled: "disabled"});
    var status = el("div", {"class": "mg-status", "data-mg": "status", "aria-live": "polite"});
    var output = el("div", {"class": "mg-output", "data-mg": "output", "aria-label": "generated text: " +
                            "use the arrow keys to move between generated characters"});
    var panelTitle = el("div", {"class": "mg-panel-title", "data-mg": "dist-title"});
    var kept = el("div", {"class": "mg-kept", "data-mg": "kept"});
    var bars = el("div", {"class": "mg-bars", "data-mg": "bars"});
    node.appendChild(el("div", {"class": "mg-card"}, [
      header,
      el("label", {"for": promptId, "class": "mg-block-label", text: "Prompt"}), prompt, promptError,
      T.row, K.row, P.row,
      el("div", {"class": "mg-row mg-wrap"}, [
        el("label", {"for": seedId, text: "seed"}), seed, newSeed,
        el("label", {"for": lengthId, text: "characters"}), length]),
      el("div", {"class": "mg-row mg-wrap"}, [go, stop, status]),
      output,
      el("div", {"class": "mg-panel"}, [panelTitle, kept, bars])
    ]));

    var state = {promptIds: null, promptLogits: null, run: null, selected: -1, timer: null, stopped: false};
    node.mgState = state;                            // for the tests and the benchmark

    function settings() {
      var k = parseInt(K.input.value, 10), p = parseFloat(P.input.value);
      return {temperature: parseFloat(T.input.value), topK: k >= V ? null : k, topP: p >= 1 ? null : p};
    }
    function showSettings() {
      var s = settings();
      T.value.textContent = s.temperature === 0 ? "0 (greedy)" : s.temperature.toFixed(2);
      K.value.textContent = s.topK === null ? "off (" + V + ")" : String(s.topK);
      P.value.textContent = s.topP === null ? "off (1.00)" : s.topP.toFixed(2);
    }

    // The bars: the SHOWN most likely tokens (by logit), each with its probability after the
    // filters; tokens the filters cut are drawn hollow. `drawn` marks the sampled token.
    function drawDistribution(logits, s, drawn, title) {
      var probs = MG.filterProbs(logits, s.temperature, s.topK, s.topP);
      var order = [];
      for (var i = 0; i < V; i++) { order.push(i); }
      order.sort(function (a, b) { return (logits[b] - logits[a]) || (a - b); });
      var nKept = probs.filter(function (x) { return x > 0; }).length;
      panelTitle.textContent = title;
      kept.textContent = "kept " + nKept + " of " + V + " tokens" +
        (drawn === null ? "" : "; drawn: " + JSON.stringify(tok.chars[drawn]) + " with probability " +
         probs[drawn].toFixed(3));
      kept.setAttribute("data-kept", String(nKept));
      bars.textContent = "";
      order.slice(0, SHOWN).forEach(function (id) {
        var isKept = probs[id] > 0;
        var fill = el("div", {"class": "mg-bar-fill"});
        fill.style.width = (100 * probs[id]).toFixed(2) + "%";
        bars.appendChild(el("div", {"class": "mg-bar" + (isKept ? " mg-kept-token" : " mg-cut-token") +
                                    (id === drawn ? " mg-drawn" : ""), "data-token": tok.chars[id]}, [
          el("span", {"class": "mg-bar-label", text: MG.showChar(tok.chars[id])}),
          el("div", {"class": "mg-bar-track"}, [fill]),
          el("span", {"class": "mg-bar-value", text: isKept ? (100 * probs[id]).toFixed(1) + "%" : "cut"})
        ]));
      });
      var rest = 0;
      order.slice(SHOWN).forEach(function (id) { rest += probs[id]; });
      bars.appendChild(el("div", {"class": "mg-bar-rest", text: "the other " + (V - SHOWN) + " tokens: " +
                                  (100 * rest).toFixed(1) + "%"}));
    }

    function showPromptDistribution() {
      if (!state.promptLogits) { return; }
      drawDistribution(state.promptLogits, settings(), null,
                       "Next character after the prompt, with the settings above:");
    }

    function readPrompt() {
      promptError.textContent = "";
      try {
        var ids = tok.encode(prompt.value);
        if (ids.length === 0) { throw new Error("the prompt is empty: type at least one character."); }
        return ids;
      } catch (e) {
        promptError.textContent = e.message;
        return null;
      }
    }

    function refreshPrompt() {                       // recompute the prompt's next-token logits
      var ids = readPrompt();
      state.promptIds = ids;
      go.disabled = ids === null || (state.run !== null && !state.run.done);
      if (ids === null) { return; }
      state.promptLogits = model.nextLogits(ids, model.newCaches());
      if (state.run === null || state.run.done) { showPromptDistribution(); }
    }

    function select(index) {                          // show the distribution of generated char i
      var spans = output.querySelectorAll(".mg-char");
      if (index < 0 || index >= spans.length || !state.run) { return; }
      Array.prototype.forEach.call(spans, function (span, i) {
        span.setAttribute("tabindex", i === index ? "0" : "-1");
        span.classList.toggle("mg-selected", i === index);
        span.setAttribute("aria-pressed", i === index ? "true" : "false");
      });
      state.selected = index;
      var step = state.run.history[index];
      drawDistribution(step.logits, state.run.settings, step.id,
                       "Character " + (index + 1) + " (" + JSON.stringify(tok.chars[step.id]) +
                       ") was drawn from (" + describeSettings(state.run.settings) + "):");
    }
    function describeSettings(s) {
      if (s.temperature === 0) { return "greedy"; }
      return "temperature " + s.temperature + (s.topK === null ? "" : ", top-k " + s.topK) +
             (s.topP === null ? "" : ", top-p " + s.topP);
    }

    function finish(message) {
      if (state.timer) { root.clearTimeout(state.timer); state.timer = null; }
      go.disabled = state.promptIds === null;
      stop.disabled = true;
      if (state.run) { state.run.done = true; }
      status.textContent = message;
    }

    function generate() {
      var ids = readPrompt();
      if (ids === null) { return; }
      var n = Math.max(1, Math.min(parseInt(length.value, 10) || 1, blockSize - ids.length));
      var s = settings(), seedValue = (parseInt(seed.value, 10) >>> 0);
      seed.value = String(seedValue);
      var choose = MG.sampler(s, new MG.Rng(seedValue));
      var gen = model.generator(ids, choose);
      var started = root.performance.now();
      state.run = {settings: s, seed: seedValue, ids: [], history: choose.history, started: started,
                   firstTokenMs: null, finishedMs: null, done: false};
      state.selected = -1;
      output.textContent = "";
      output.appendChild(el("span", {"class": "mg-prompt-text", text: prompt.value}));
      go.disabled = true;
      stop.disabled = false;
      state.stopped = false;
      var run = state.run;
      function chunk() {
        var deadline = root.performance.now() + 15;   // keep the page responsive: ~60 frames/s
        while (run.ids.length < n && !state.stopped && root.performance.now() < deadline) {
          var id = gen.step().id, index = run.ids.length;
          run.ids.push(id);
          var ch = tok.chars[id];
          var span = el("span", {"class": "mg-char" + (ch === "\n" ? " mg-newline" : ""), role: "button",
                                 tabindex: index === 0 ? "0" : "-1", "data-index": String(index),
                                 "aria-label": "character " + (index + 1) + ": " + JSON.stringify(ch),
                                 text: ch === "\n" ? "↵\n" : ch});
          output.appendChild(span);
          if (run.firstTokenMs === null) { run.firstTokenMs = root.performance.now() - started; }
        }
        var elapsed = (root.performance.now() - started) / 1000;
        status.textContent = run.ids.length + " characters, " + (run.ids.length / elapsed).toFixed(0) +
          " characters/s, first after " + run.firstTokenMs.toFixed(0) + " ms";
        if (run.ids.length >= n || state.stopped) {
          run.finishedMs = root.performance.now() - started;
          var full = ids.length + run.ids.length >= blockSize ? " The context window (" + blockSize +
            " characters) is full." : "";
          finish(status.textContent + " (seed " + seedValue + ")." + full + " Click a character to see its distribution.");
          return;
        }
        state.timer = root.setTimeout(chunk, 0);
      }
      chunk();
    }

    output.addEventListener("click", function (event) {
      var target = event.target.closest ? event.target.closest(".mg-char") : null;
      if (target) { select(parseInt(target.getAttribute("data-index"), 10)); target.focus(); }
    });
    output.addEventListener("keydown", function (event) {
      var target = event.target.closest ? event.target.closest(".mg-char") : null;
      if (!target) { return; }
      var i = parseInt(target.getAttribute("data-index"), 10), count = output.querySelectorAll(".mg-char").length;
      var next = {ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: count - 1}[event.key];
      if (event.key === "Enter" || event.key === " ") { select(i); event.preventDefault(); return; }
      if (next === undefined) { return; }
      next = Math.max(0, Math.min(count - 1, next));
      select(next);
      output.querySelectorAll(".mg-char")[next].focus();
      event.preventDefault();
    });
    output.addEventListener("focusin", function (event) {
      var target = event.target.closest ? event.target.closest(".mg-char") : null;
      if (target && state.selected !== parseInt(target.getAttribute("data-index"), 10)) {
        select(parseInt(target.getAttribute("data-index"), 10));
      }
    });
    [T, K, P].forEach(function (s) {
      s.input.addEventListener("input", function () { showSettings(); showPromptDistribution(); });
    });
    var debounce = null;
    prompt.addEventListener("input", function () {
      root.clearTimeout(debounce);
      debounce = root.setTimeout(refreshPrompt, 250);
    });
    newSeed.addEventListener("click", function () {
      seed.value = String(Math.floor(Math.random() * 1e6));
    });
    go.addEventListener("click", generate);
    stop.addEventListener("click", function () { state.stopped = true; });
    showSettings();
    refreshPrompt();
    status.textContent = "Press Generate.";
  };

  if (MG.mountAll) { MG.mountAll(); }
})(typeof globalThis !== "undefined" ? globalThis : this);
