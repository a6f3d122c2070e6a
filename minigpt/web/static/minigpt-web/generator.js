/* Chapter 9's live generator: prompt, temperature / top-k / top-p, a visible seed, and
 * streamed characters you can click to see the distribution each one was drawn from.
 *
 * Everything runs in this page: model.js computes the logits, sampling.js filters them
 * exactly as minigpt.next_token_probs does and draws with a seeded RNG.
 *
 * Speed: the prompt's KV caches are kept up to date while the reader types (a model.js
 * Prefill: typing at the end costs one token), so Generate starts decoding at once instead
 * of running the whole prompt again.
 * Honesty: whatever the panel and the output show belongs to the prompt and settings on
 * screen; an invalid field says so and clears what it would make stale, and nothing typed
 * is silently cut or clamped.
 * Language: every message goes through tr() and the table ZH below (see widgets.js).
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};
  MG.widgets = MG.widgets || {};
  var el = function (tag, a, c) { return MG.el(tag, a, c); };
  var SHOWN = 12;                                   // bars in the distribution panel
  var MAX_SEED = 4294967295;

  var ZH = {
    "Prompt": "提示",
    "temperature": "温度",
    "seed": "随机种子",
    "new seed": "换一个随机种子",
    "characters": "字符数",
    "Generate": "生成",
    "Stop": "停止",
    "Try:": "试一试：",
    "generated text: use the arrow keys to move between generated characters": "生成的文本：用方向键在生成的字符之间移动",
    "{what} must be a whole number from {low} to {high} (the box shows {shown}); Generate waits until it is.":
      "{what}必须是 {low} 到 {high} 之间的整数（框里现在是 {shown}）；改好之前不能生成。",
    "0 (greedy)": "0（贪心解码）",
    "off ({V})": "关闭（{V}）",
    "off (1.00)": "关闭（1.00）",
    "cut": "切掉",
    "kept {kept} of {V} tokens": "保留了 {V} 个词元中的 {kept} 个",
    "; drawn: {character} with probability {p}": "；抽中 {character}，概率 {p}",
    "… the drawn character ranks {rank} of {V}:": "……抽中的字符在 {V} 个中排第 {rank}：",
    "the other {n} tokens: {percent}%": "其余 {n} 个词元：{percent}%",
    "Next character after the prompt, with the settings above:": "按上面的设置，提示之后下一个字符的分布：",
    "Your prompt has {n} characters; the model's window holds {block}, so it reads only the last {kept} (the first {cut} are cut, from {start}).":
      "你的提示有 {n} 个字符；模型的上下文窗口只有 {block} 个字符，所以它只读最后 {kept} 个（开头的 {cut} 个被切掉了，从 {start} 开始）。",
    "the prompt is empty: type at least one character.": "提示是空的：请至少输入一个字符。",
    "No distribution: the prompt above has an error.": "没有分布：上面的提示有错误。",
    "Fix the prompt to generate.": "改好提示才能生成。",
    "Character {i} ({character}) was drawn from ({settings}):": "第 {i} 个字符（{character}）是从这个分布中抽出来的（{settings}）：",
    "greedy": "贪心解码",
    "temperature {value}": "温度 {value}",
    ", top-k {value}": "，top-k {value}",
    ", top-p {value}": "，top-p {value}",
    " (only {n} of the {wanted} asked for fit in the {block}-character window after this prompt)":
      "（在这个提示之后，{block} 个字符的上下文窗口只放得下所要的 {wanted} 个中的 {n} 个）",
    "Generating {n} characters{fits}.": "正在生成 {n} 个字符{fits}。",
    "character {i}: {character}": "第 {i} 个字符：{character}",
    "{done} of {n} characters, {rate} characters/s, first after {first} ms":
      "已生成 {done}/{n} 个字符，每秒 {rate} 个字符，第一个字符用了 {first} 毫秒",
    " The {block}-character window is full: this page stops there (model.generate would slide the window on and keep going).":
      "{block} 个字符的上下文窗口已经满了：本页在这里停下（model.generate 会把窗口向后滑动，继续生成）。",
    "Stopped by an error after {done} characters: {message}": "生成了 {done} 个字符后因错误停止：{message}",
    "Done: {status}{fits} (seed {seed}).{full} Click a character to see its distribution.":
      "完成：{status}{fits}（随机种子 {seed}）。{full}点击一个字符，可以看到它是从哪个分布中抽出来的。",
    "Stopped: {status}{fits} (seed {seed}).{full} Click a character to see its distribution.":
      "已停止：{status}{fits}（随机种子 {seed}）。{full}点击一个字符，可以看到它是从哪个分布中抽出来的。",
    "Press Generate.": "请按“生成”。"
  };
  function tr(english, fields) { return MG.tr(ZH, english, fields); }

  function uid(prefix) { return prefix + "-" + Math.random().toString(36).slice(2, 8); }

  function slider(label, attrs) {
    var input = el("input", Object.assign({type: "range", "data-mg": attrs.key}, attrs.range));
    var value = el("output", {"data-mg": attrs.key + "-value", "class": "mg-value"});
    input.id = uid("mg-" + attrs.key);
    value.setAttribute("for", input.id);
    return {row: el("div", {"class": "mg-row"}, [el("label", {"for": input.id, text: label}), input, value]),
            input: input, value: value};
  }

  // A whole number typed in a box, checked against [low, high]: {value} or {error}.
  function wholeNumber(text, low, high, what) {
    var trimmed = String(text).normalize("NFKC").trim();    // full-width digits (Chinese IMEs) are digits
    if (!/^\d+$/.test(trimmed) || +trimmed < low || +trimmed > high) {
      return {error: tr("{what} must be a whole number from {low} to {high} (the box shows {shown}); Generate waits until it is.",
                       {what: tr(what), low: low, high: high, shown: JSON.stringify(trimmed)})};
    }
    return {value: +trimmed};
  }

  MG.widgets.generator = function (node, model, config) {
    var V = model.config.vocab_size, blockSize = model.config.block_size, tok = model.tokenizer;
    var maxPrompt = blockSize - 1;                   // leave room for at least one new character
    var header = el("div", {"class": "mg-caption", "data-mg": "model", text: MG.describeModel(model)});
    var promptId = uid("mg-prompt");
    var prompt = el("textarea", {id: promptId, rows: "3", "data-mg": "prompt", spellcheck: "false"});
    prompt.value = config.prompt;
    // errors are read out politely, once per change (an alert would interrupt every keystroke)
    var promptError = el("div", {"class": "mg-error", "data-mg": "prompt-error", "aria-live": "polite"});
    var promptNote = el("div", {"class": "mg-caption", "data-mg": "prompt-note"});
    // top-k and top-p keep their names in Chinese too (as the Chinese chapters write them).
    var T = slider(tr("temperature"), {key: "temperature", range: {min: "0", max: "2", step: "0.05"}});
    var K = slider("top-k", {key: "top-k", range: {min: "1", max: String(V), step: "1"}});
    var P = slider("top-p", {key: "top-p", range: {min: "0.05", max: "1", step: "0.01"}});
    var seedId = uid("mg-seed");
    var seed = el("input", {id: seedId, type: "text", inputmode: "numeric", "data-mg": "seed", "class": "mg-seed"});
    var newSeed = el("button", {type: "button", "data-mg": "new-seed", text: tr("new seed")});
    var lengthId = uid("mg-length");
    var length = el("input", {id: lengthId, type: "text", inputmode: "numeric", "data-mg": "length", "class": "mg-seed"});
    length.value = String(config.max_new_tokens);
    var fieldError = el("div", {"class": "mg-error", "data-mg": "field-error", "aria-live": "polite"});
    var go = el("button", {type: "button", "class": "mg-primary", "data-mg": "generate", text: tr("Generate")});
    var stop = el("button", {type: "button", "data-mg": "stop", text: tr("Stop"), disabled: "disabled"});
    var status = el("div", {"class": "mg-status", "data-mg": "status"});
    // Screen readers hear the start and the end of a run only, not every progress update.
    var announce = el("div", {"class": "mg-sr-only", "data-mg": "announce", "aria-live": "polite", role: "status"});
    var output = el("div", {"class": "mg-output", "data-mg": "output", role: "group",
                            "aria-label": tr("generated text: use the arrow keys to move between generated characters")});
    var panelTitle = el("div", {"class": "mg-panel-title", "data-mg": "dist-title"});
    var kept = el("div", {"class": "mg-kept", "data-mg": "kept"});
    var bars = el("div", {"class": "mg-bars", "data-mg": "bars"});
    var examples = null;
    if (config.examples && config.examples.length) {
      examples = el("div", {"class": "mg-row mg-wrap mg-examples", "data-mg": "examples"},
                    [el("span", {"class": "mg-caption", text: tr("Try:")})]);
      config.examples.forEach(function (example, i) {
        examples.appendChild(el("button", {type: "button", "data-mg": "example", "data-example": String(i),
                                           title: example.note || example.label, text: example.label}));
      });
    }
    node.appendChild(el("div", {"class": "mg-card"}, [
      header, examples,
      el("label", {"for": promptId, "class": "mg-block-label", text: tr("Prompt")}), prompt, promptNote, promptError,
      T.row, K.row, P.row,
      el("div", {"class": "mg-row mg-wrap"}, [
        el("label", {"for": seedId, text: tr("seed")}), seed, newSeed,
        el("label", {"for": lengthId, text: tr("characters")}), length]),
      fieldError,
      el("div", {"class": "mg-row mg-wrap"}, [go, stop, status]), announce,
      output,
      el("div", {"class": "mg-panel"}, [panelTitle, kept, bars])
    ]));

    var prefill = new MG.Prefill(model);
    var state = {promptIds: null, promptLogits: null, run: null, selected: -1, timer: null, stopped: false,
                 prefill: prefill, prefilledPositions: 0, seed: null, length: null};
    node.mgState = state;                            // for the tests and the benchmark

    function applySettings(s) {                      // s: {temperature, top_k, top_p, seed, max_new_tokens}
      T.input.value = String(s.temperature);
      K.input.value = String(s.top_k === null || s.top_k === undefined ? V : s.top_k);
      P.input.value = String(s.top_p === null || s.top_p === undefined ? 1 : s.top_p);
      if (s.seed !== undefined) { seed.value = String(s.seed); }
      if (s.max_new_tokens !== undefined) { length.value = String(s.max_new_tokens); }
    }
    function settings() {
      var k = parseInt(K.input.value, 10), p = parseFloat(P.input.value);
      return {temperature: parseFloat(T.input.value), topK: k >= V ? null : k, topP: p >= 1 ? null : p};
    }
    function showSettings() {
      var s = settings();
      T.value.textContent = s.temperature === 0 ? tr("0 (greedy)") : s.temperature.toFixed(2);
      K.value.textContent = s.topK === null ? tr("off ({V})", {V: V}) : String(s.topK);
      P.value.textContent = s.topP === null ? tr("off (1.00)") : s.topP.toFixed(2);
      // a screen reader announces a slider's value: "0 (greedy)" and "off", not a bare number
      [T, K, P].forEach(function (s) { s.input.setAttribute("aria-valuetext", s.value.textContent); });
    }

    function barRow(id, probs, drawn, rank) {
      var isKept = probs[id] > 0;
      var fill = el("div", {"class": "mg-bar-fill"});
      fill.style.width = (100 * probs[id]).toFixed(2) + "%";
      return el("div", {"class": "mg-bar" + (isKept ? " mg-kept-token" : " mg-cut-token") +
                        (id === drawn ? " mg-drawn" : ""), "data-token": tok.chars[id], "data-rank": String(rank)}, [
        el("span", {"class": "mg-bar-label", text: MG.showChar(tok.chars[id])}),
        el("div", {"class": "mg-bar-track"}, [fill]),
        el("span", {"class": "mg-bar-value", text: isKept ? (100 * probs[id]).toFixed(1) + "%" : tr("cut")})
      ]);
    }

    // The bars: the SHOWN most likely tokens (by logit), each with its probability after the
    // filters; tokens the filters cut are drawn hollow. `drawn` marks the sampled token, which
    // always gets a bar: below the others, with its rank, when it is not among the SHOWN.
    function drawDistribution(logits, s, drawn, title) {
      var probs = MG.filterProbs(logits, s.temperature, s.topK, s.topP);
      var order = [];
      for (var i = 0; i < V; i++) { order.push(i); }
      order.sort(function (a, b) { return (logits[b] - logits[a]) || (a - b); });
      var nKept = probs.filter(function (x) { return x > 0; }).length;
      panelTitle.textContent = title;
      kept.textContent = tr("kept {kept} of {V} tokens", {kept: nKept, V: V}) +
        (drawn === null ? "" : tr("; drawn: {character} with probability {p}",
                                 {character: JSON.stringify(tok.chars[drawn]), p: probs[drawn].toFixed(3)}));
      kept.setAttribute("data-kept", String(nKept));
      bars.textContent = "";
      order.slice(0, SHOWN).forEach(function (id, rank) { bars.appendChild(barRow(id, probs, drawn, rank + 1)); });
      var drawnRank = drawn === null ? -1 : order.indexOf(drawn), rest = 0, others = Math.max(0, V - SHOWN);
      order.slice(SHOWN).forEach(function (id) { if (id !== drawn) { rest += probs[id]; } });
      if (drawnRank >= SHOWN) {
        others -= 1;
        bars.appendChild(el("div", {"class": "mg-bar-rest", text: tr("… the drawn character ranks {rank} of {V}:",
                                                                     {rank: drawnRank + 1, V: V})}));
        bars.appendChild(barRow(drawn, probs, drawn, drawnRank + 1));
      }
      if (others > 0) {                              // a vocabulary of SHOWN tokens or fewer has no rest
        bars.appendChild(el("div", {"class": "mg-bar-rest", text: tr("the other {n} tokens: {percent}%",
                                                                     {n: others, percent: (100 * rest).toFixed(1)})}));
      }
    }

    function clearDistribution(title) {
      panelTitle.textContent = title;
      kept.textContent = "";
      kept.removeAttribute("data-kept");
      bars.textContent = "";
    }

    function showPromptDistribution() {
      if (!state.promptLogits) { return; }
      drawDistribution(state.promptLogits, settings(), null,
                       tr("Next character after the prompt, with the settings above:"));
    }

    function deselect() {
      state.selected = -1;
      Array.prototype.forEach.call(output.querySelectorAll(".mg-char.mg-selected"), function (span) {
        span.classList.remove("mg-selected");
        span.setAttribute("aria-pressed", "false");
      });
    }

    // The prompt as ids, or null with the reason shown (and stale bars and output cleared).
    function readPrompt() {
      var chars = Array.from(prompt.value);
      promptError.textContent = "";
      promptNote.textContent = "";
      var visible = chars;
      if (chars.length > maxPrompt) {
        visible = chars.slice(chars.length - maxPrompt);
        promptNote.textContent = tr("Your prompt has {n} characters; the model's window holds {block}, so it reads " +
                                   "only the last {kept} (the first {cut} are cut, from {start}).",
          {n: chars.length, block: blockSize, kept: maxPrompt, cut: chars.length - maxPrompt,
           start: JSON.stringify(chars.slice(0, Math.min(12, chars.length - maxPrompt)).join("")) +
                  (chars.length - maxPrompt > 12 ? "…" : "")});
      }
      try {
        if (visible.length === 0) { throw new Error(tr("the prompt is empty: type at least one character.")); }
        return tok.encode(visible.join(""));
      } catch (e) {                                  // positions count from the start of the whole box
        promptError.textContent = e.position === undefined ? e.message
          : MG.unknownCharacter(e, model, chars.length - visible.length);
        return null;
      }
    }

    function readFields() {                          // seed and length, never clamped behind the reader's back
      var messages = [];
      var s = wholeNumber(seed.value, 0, MAX_SEED, "seed"), n = wholeNumber(length.value, 1, maxPrompt, "characters");
      seed.setAttribute("aria-invalid", s.error ? "true" : "false");
      length.setAttribute("aria-invalid", n.error ? "true" : "false");
      if (s.error) { messages.push(s.error); }
      if (n.error) { messages.push(n.error); }
      fieldError.textContent = messages.join(" ");
      state.seed = s.error ? null : s.value;
      state.length = n.error ? null : n.value;
      return !messages.length;
    }

    function running() { return state.run !== null && !state.run.done; }
    function updateGo() {
      go.disabled = state.promptIds === null || state.seed === null || state.length === null || running();
      if (examples) {                                 // an example starts a run: not during one
        examples.querySelectorAll("[data-example]").forEach(function (b) { b.disabled = running(); });
      }
    }

    // Bring the prefill up to the prompt on screen. `keepOutput`: the run that has just ended
    // stays on screen (with its status) even if the prompt was broken during it.
    function refreshPrompt(keepOutput) {
      var ids = readPrompt();
      state.promptIds = ids;
      if (ids === null) {
        state.promptLogits = null;
        if (!running() && !keepOutput) {             // text generated from an older prompt would mislead
          state.run = null;
          deselect();
          output.textContent = "";
          status.textContent = tr("Fix the prompt to generate.");
        }
        if (state.selected < 0) {                    // and so would its bars
          clearDistribution(tr("No distribution: the prompt above has an error."));
        }
        updateGo();
        return;
      }
      // A run decodes from its own copy of the caches, so the prefill can follow the prompt
      // even between a run's chunks (JavaScript runs one of them at a time).
      state.prefilledPositions = prefill.update(ids);
      state.promptLogits = prefill.logits;
      if (state.selected < 0) { showPromptDistribution(); }
      updateGo();
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
                       tr("Character {i} ({character}) was drawn from ({settings}):",
                         {i: index + 1, character: JSON.stringify(tok.chars[step.id]),
                          settings: describeSettings(state.run.settings)}));
    }
    function describeSettings(s) {
      if (s.temperature === 0) { return tr("greedy"); }
      return tr("temperature {value}", {value: s.temperature}) +
             (s.topK === null ? "" : tr(", top-k {value}", {value: s.topK})) +
             (s.topP === null ? "" : tr(", top-p {value}", {value: s.topP}));
    }

    function finish(message) {
      if (state.timer) { root.clearTimeout(state.timer); state.timer = null; }
      // Stop had focus (or nothing had: Safari does not focus a clicked button): give it to
      // Generate, without scrolling a reader who has read on down the page
      var hadFocus = root.document.activeElement === stop || root.document.activeElement === root.document.body;
      stop.disabled = true;
      if (state.run) { state.run.done = true; }
      status.textContent = message;
      announce.textContent = message;
      refreshPrompt(true);                            // the prompt may have changed during the run
      if (hadFocus && !go.disabled) { go.focus({preventScroll: true}); }
    }

    function generate() {
      refreshPrompt();                                // usually nothing left to do: typed positions are cached
      readFields();
      updateGo();
      if (go.disabled) { return; }
      var started = root.performance.now();
      var ids = state.promptIds, wanted = state.length, seedValue = state.seed;
      var n = Math.min(wanted, blockSize - ids.length);
      var s = settings();
      var choose = MG.sampler(s, new MG.Rng(seedValue));
      var gen = model.generator(ids, choose, prefill);
      state.run = {settings: s, seed: seedValue, ids: [], history: choose.history, started: started,
                   firstTokenMs: null, finishedMs: null, done: false, usedPrefill: prefill.matches(ids)};
      deselect();
      var panelPending = true;                        // the panel may show a character of the run
      output.textContent = "";                        // this one replaces: redrawn after chunk 1
      output.appendChild(el("span", {"class": "mg-prompt-text", text: tok.decode(ids)}));
      var active = root.document.activeElement;       // Generate, or an example, is disabled now
      var hadFocus = active === go || (examples !== null && examples.contains(active));
      updateGo();                                     // the run has begun: Generate and the examples wait
      stop.disabled = false;
      if (hadFocus) { stop.focus(); }               // a disabled button would drop focus to the page
      state.stopped = false;
      var fits = n < wanted ? tr(" (only {n} of the {wanted} asked for fit in the {block}-character window after this prompt)",
                                {n: n, wanted: wanted, block: blockSize}) : "";
      announce.textContent = tr("Generating {n} characters{fits}.", {n: n, fits: fits});
      var run = state.run;
      function chunk() {
        // An error inside the model or the sampler must not leave the run half-open (Generate
        // disabled, Stop doing nothing): it ends the run and says what went wrong.
        try { chunkBody(); } catch (error) {
          run.finishedMs = root.performance.now() - started;
          if (root.console) { root.console.error(error); }
          finish(tr("Stopped by an error after {done} characters: {message}",
                    {done: run.ids.length, message: error && error.message ? error.message : String(error)}));
        }
      }
      function chunkBody() {
        var deadline = root.performance.now() + 15;   // keep the page responsive: ~60 frames/s
        while (run.ids.length < n && !state.stopped && root.performance.now() < deadline) {
          var id = gen.step().id, index = run.ids.length;
          run.ids.push(id);
          var ch = tok.chars[id];
          var span = el("span", {"class": "mg-char" + (ch === "\n" ? " mg-newline" : ""), role: "button",
                                 tabindex: index === 0 ? "0" : "-1", "data-index": String(index),
                                 "aria-pressed": "false",
                                 "aria-label": tr("character {i}: {character}", {i: index + 1, character: JSON.stringify(ch)}),
                                 text: ch === "\n" ? "↵\n" : ch});
          output.appendChild(span);
          if (run.firstTokenMs === null) { run.firstTokenMs = root.performance.now() - started; }
        }
        if (panelPending) {                             // after the first characters, not before them
          panelPending = false;
          showPromptDistribution();
        }
        var elapsed = (root.performance.now() - started) / 1000;
        status.textContent = tr("{done} of {n} characters, {rate} characters/s, first after {first} ms",
                               {done: run.ids.length, n: n, rate: (run.ids.length / elapsed).toFixed(0),
                                first: run.firstTokenMs.toFixed(0)});
        if (run.ids.length >= n || state.stopped) {
          run.finishedMs = root.performance.now() - started;
          var full = ids.length + run.ids.length >= blockSize
            ? tr(" The {block}-character window is full: this page stops there (model.generate would slide the window on and keep going).", {block: blockSize}) : "";
          var fields = {status: status.textContent, fits: fits, seed: seedValue, full: full};
          finish(state.stopped ? tr("Stopped: {status}{fits} (seed {seed}).{full} Click a character to see its distribution.", fields)
                               : tr("Done: {status}{fits} (seed {seed}).{full} Click a character to see its distribution.", fields));
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
      // New settings describe the next draw, not a character already drawn: leave the
      // character's panel and show the prompt's distribution under the new settings.
      s.input.addEventListener("input", function () { showSettings(); deselect(); showPromptDistribution(); });
    });
    var pending = null;
    prompt.addEventListener("input", function () {   // coalesce a burst of keystrokes into one update
      root.clearTimeout(pending);
      pending = root.setTimeout(refreshPrompt, 30);
    });
    [seed, length].forEach(function (field) {
      field.addEventListener("input", function () { readFields(); updateGo(); });
    });
    newSeed.addEventListener("click", function () {
      seed.value = String(Math.floor(Math.random() * 1e6));
      readFields();
      updateGo();
    });
    if (examples) {
      examples.addEventListener("click", function (event) {
        var button = event.target.closest ? event.target.closest("[data-example]") : null;
        if (!button || running()) { return; }
        var example = config.examples[+button.getAttribute("data-example")];
        prompt.value = example.prompt;
        applySettings(example);
        showSettings();
        readFields();
        refreshPrompt();
        generate();
      });
    }
    go.addEventListener("click", generate);
    stop.addEventListener("click", function () { state.stopped = true; });
    applySettings({temperature: config.temperature, top_k: config.top_k, top_p: config.top_p, seed: config.seed});
    showSettings();
    readFields();
    refreshPrompt();
    status.textContent = tr("Press Generate.");
  };

  if (MG.mountAll) { MG.mountAll(); }
})(typeof globalThis !== "undefined" ? globalThis : this);
