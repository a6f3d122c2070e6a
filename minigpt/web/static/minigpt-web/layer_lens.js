/* Chapter 10's "what each layer predicts" view (the logit lens), on the reader's own text.
 *
 * model.layerLogits(ids) applies the final LayerNorm and the tied head to the residual stream
 * after the embedding and after every block (the twin of minigpt.viz.layer_logits). For the
 * chosen position the table shows each layer's most likely next characters, and where the
 * character that really comes next in the text ranks.
 * Language: every message goes through tr() and the table ZH below (see widgets.js).
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};
  MG.widgets = MG.widgets || {};
  var el = function (tag, a, c) { return MG.el(tag, a, c); };

  var ZH = {
    "Text": "文本",
    "Pick a position (click a character, or focus one and use the arrow keys): each row is what the model would predict for the next character if it stopped after that layer.":
      "选一个位置（点击一个字符，或者让它获得焦点再用方向键）：每一行是模型如果在那一层之后就停下，会对下一个字符作出的预测。",
    "position to read: arrow keys move": "要查看的位置：用方向键移动",
    "After {text} (position {p})": "在 {text}（位置 {p}）之后",
    ", the end of the text:": "，文本到此结束：",
    "; the text continues with {next} (outlined where a layer ranks it in its top {k}):":
      "；文本接下来是 {next}（某一层把它排进前 {k} 名时，用框标出）：",
    "stopped after": "停在",
    "#{rank}": "第 {rank} 名",
    "next {next}": "下一个 {next}",
    "embedding": "嵌入",
    "block {n}": "第 {n} 块",
    "block {n} (output)": "第 {n} 块（输出）",
    "{percent}% (rank {rank})": "{percent}%（第 {rank} 名）",
    "the text is empty: type at least one character.": "文本是空的：请至少输入一个字符。",
    "the text has {n} characters; this view reads at most {max}: shorten it.": "文本有 {n} 个字符；这个视图至多读 {max} 个：请把它改短。",
    "The greyed table is for the previous text; fix the text to update it.": "变灰的表格是上一段文本的；改好文本才会更新。",
    "position {i}: {character}": "位置 {i}：{character}"
  };
  function tr(english, fields) { return MG.tr(ZH, english, fields); }

  function softmax(logits, offset, V) {
    var max = -Infinity, total = 0, probs = new Float64Array(V), i;
    for (i = 0; i < V; i++) { if (logits[offset + i] > max) { max = logits[offset + i]; } }
    for (i = 0; i < V; i++) { probs[i] = Math.exp(logits[offset + i] - max); total += probs[i]; }
    for (i = 0; i < V; i++) { probs[i] /= total; }
    return probs;
  }
  // The k most likely ids of probs, best first (ties by the lower id, as everywhere in the book).
  function topIds(probs, k) {
    var order = [];
    for (var i = 0; i < probs.length; i++) { order.push(i); }
    order.sort(function (a, b) { return (probs[b] - probs[a]) || (a - b); });
    return {top: order.slice(0, k), order: order};
  }
  MG.layerTop = function (layerLogits, position, V, k) {   // [{ids, probs}] per layer, for the tests
    return layerLogits.map(function (logits) {
      var probs = softmax(logits, position * V, V), top = topIds(probs, k).top;
      return {ids: top, probs: top.map(function (id) { return probs[id]; })};
    });
  };

  MG.widgets.layers = function (node, model, config) {
    var cfg = model.config, V = cfg.vocab_size, tok = model.tokenizer, k = config.top_k;
    var maxChars = Math.min(config.max_chars, cfg.block_size);   // the model reads at most its window
    var uid = Math.random().toString(36).slice(2, 8);
    var header = el("div", {"class": "mg-caption", "data-mg": "model", text: MG.describeModel(model)});
    var text = el("textarea", {id: "mg-lens-text-" + uid, rows: "2", "data-mg": "text", spellcheck: "false"});
    text.value = config.text;
    var error = el("div", {"class": "mg-error", "data-mg": "text-error", "aria-live": "polite"});
    var chars = el("div", {"class": "mg-output mg-lens-chars", "data-mg": "positions", role: "radiogroup",
                           "aria-label": tr("position to read: arrow keys move")});
    var title = el("div", {"class": "mg-panel-title", "data-mg": "lens-title", "aria-live": "polite"});
    var table = el("table", {"class": "mg-lens", "data-mg": "lens"});
    node.appendChild(el("div", {"class": "mg-card"}, [
      header,
      el("label", {"for": text.id, "class": "mg-block-label", text: tr("Text")}), text, error,
      el("div", {"class": "mg-caption", text: tr("Pick a position (click a character, or focus one and use the arrow " +
                 "keys): each row is what the model would predict for the next character if it stopped after " +
                 "that layer.")}),
      chars, title, el("div", {"class": "mg-lens-box"}, [table])
    ]));

    // pinned: the reader chose the position (click or keys), so an edit of the text keeps it;
    // until then the view follows the end of the text (or config.position) as the reader types
    var state = {chars: null, logits: null, position: -1, pinned: false, stale: false};
    node.mgState = state;

    function drawTable() {
      var p = state.position, T = state.chars.length, next = p + 1 < T ? tok.stoi[state.chars[p + 1]] : null;
      title.textContent = tr("After {text} (position {p})", {text: JSON.stringify(state.chars.slice(Math.max(0, p - 11), p + 1).join("")),
                                                            p: p}) +
        (next === null ? tr(", the end of the text:") :
         tr("; the text continues with {next} (outlined where a layer ranks it in its top {k}):",
            {next: JSON.stringify(state.chars[p + 1]), k: k}));
      table.textContent = "";
      var head = el("tr", {}, [el("th", {text: tr("stopped after")})]);
      for (var r = 0; r < k; r++) { head.appendChild(el("th", {text: tr("#{rank}", {rank: r + 1})})); }
      if (next !== null) { head.appendChild(el("th", {text: tr("next {next}", {next: JSON.stringify(state.chars[p + 1])})})); }
      table.appendChild(el("thead", {}, [head]));
      var body = el("tbody");
      state.logits.forEach(function (logits, layer) {
        var probs = softmax(logits, p * V, V), ranked = topIds(probs, k);
        var name = layer === 0 ? tr("embedding") : layer === cfg.n_layer ? tr("block {n} (output)", {n: layer - 1})
                                                                       : tr("block {n}", {n: layer - 1});
        var row = el("tr", {"data-layer": String(layer)}, [el("th", {scope: "row", text: name})]);
        ranked.top.forEach(function (id) {
          row.appendChild(el("td", {"class": id === next ? "mg-lens-hit" : "", "data-token": tok.chars[id]}, [
            el("span", {"class": "mg-lens-char", text: MG.showChar(tok.chars[id])}),
            el("span", {"class": "mg-lens-p", text: " " + (100 * probs[id]).toFixed(0) + "%"})]));
        });
        if (next !== null) {
          row.appendChild(el("td", {"class": "mg-lens-next", text: tr("{percent}% (rank {rank})",
                                    {percent: (100 * probs[next]).toFixed(1), rank: ranked.order.indexOf(next) + 1})}));
        }
        body.appendChild(row);
      });
      table.appendChild(body);
    }

    function choose(position, focus) {
      var spans = chars.querySelectorAll(".mg-char");
      if (position < 0 || position >= spans.length) { return; }
      state.position = position;
      Array.prototype.forEach.call(spans, function (span, i) {
        var on = i === position;
        span.classList.toggle("mg-selected", on);
        span.setAttribute("aria-checked", on ? "true" : "false");
        span.setAttribute("tabindex", on ? "0" : "-1");
      });
      drawTable();
      if (focus) { spans[position].focus(); }
    }

    function compute() {
      error.textContent = "";
      var list = Array.from(text.value), ids, logits;
      try {
        if (list.length === 0) { throw new Error(tr("the text is empty: type at least one character.")); }
        if (list.length > maxChars) {
          throw new Error(tr("the text has {n} characters; this view reads at most {max}: shorten it.",
                            {n: list.length, max: maxChars}));
        }
        ids = tok.encode(text.value);
        logits = model.layerLogits(ids);             // inside the try: its error is shown too
      } catch (e) {
        error.textContent = e.position === undefined ? e.message : MG.unknownCharacter(e, model, 0);
        state.stale = true;
        chars.classList.add("mg-stale");
        table.classList.add("mg-stale");
        title.textContent = state.logits ? tr("The greyed table is for the previous text; fix the text to update it.") : "";
        return;
      }
      state.stale = false;
      chars.classList.remove("mg-stale");
      table.classList.remove("mg-stale");
      state.chars = list;
      state.logits = logits;
      chars.textContent = "";
      list.forEach(function (ch, i) {
        chars.appendChild(el("span", {"class": "mg-char" + (ch === "\n" ? " mg-newline" : ""), role: "radio",
                                      "aria-checked": "false", tabindex: "-1", "data-index": String(i),
                                      "aria-label": tr("position {i}: {character}", {i: i, character: JSON.stringify(ch)}),
                                      text: ch === "\n" ? "↵\n" : ch}));
      });
      var wanted = config.position === null || config.position === undefined ? list.length - 1 : config.position;
      choose(Math.max(0, Math.min(list.length - 1, state.pinned ? state.position : wanted)), false);
    }

    chars.addEventListener("click", function (event) {
      var target = event.target.closest ? event.target.closest(".mg-char") : null;
      if (target && !state.stale) { state.pinned = true; choose(+target.getAttribute("data-index"), true); }
    });
    chars.addEventListener("keydown", function (event) {
      if (state.stale) { return; }
      var count = state.chars.length;
      // a radio group: Right/Down to the next position, Left/Up to the previous one
      var next = {ArrowRight: state.position + 1, ArrowDown: state.position + 1, ArrowLeft: state.position - 1,
                  ArrowUp: state.position - 1, Home: 0, End: count - 1}[event.key];
      if (next === undefined) { return; }
      event.preventDefault();
      state.pinned = true;
      choose(Math.max(0, Math.min(count - 1, next)), true);
    });
    var debounce = null;
    text.addEventListener("input", function () {
      root.clearTimeout(debounce);
      debounce = root.setTimeout(compute, 150);
    });
    compute();
  };

  if (MG.mountAll) { MG.mountAll(); }
})(typeof globalThis !== "undefined" ? globalThis : this);
