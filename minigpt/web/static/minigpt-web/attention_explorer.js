/* Chapters 4 and 10's attention explorer: every head of the model, on the reader's own text.
 *
 * model.attentionMaps(ids) returns maps[layer][head], a (T, T) Float32Array (row = query
 * position, column = key position), the same numbers as MiniGPT.attention_maps. The big view
 * draws one head with the characters (or, on long texts, position ticks) on both axes;
 * hovering (or moving with the arrow keys) reads out query character, key character and
 * weight. The overview draws all heads small; it is one Tab stop, and the arrow keys move
 * between its heads (each opens in the big view).
 *
 * Speed: the maps are computed once per text, by a model.js LiveMaps: an edit reruns only the
 * positions after the part of the text it left unchanged (typing at the end costs one
 * position; a new 128-character text is one attentionMaps pass, which skips everything the
 * maps do not need). Each head becomes a (T, T) ImageData once, scaled up for the big view
 * and max-pooled down for its thumbnail (so a one-pixel diagonal stays visible at 128
 * characters). Switching heads redraws the big view only.
 * Language: every message goes through tr() and the table ZH below (see widgets.js).
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};
  MG.widgets = MG.widgets || {};
  var el = function (tag, a, c) { return MG.el(tag, a, c); };
  var THUMB = 64;                                   // thumbnail resolution (pixels) at most

  var ZH = {
    "text": "文本",
    "your own text": "你自己的文本",
    "text to explore (at most {n} characters)": "要探查的文本（至多 {n} 个字符）",
    "layer": "层",
    "head": "头",
    "attention weight": "注意力权重",
    "attention map": "注意力图",
    "Hover over a square (or focus the map and use the arrow keys).": "把鼠标移到一个方格上（或者让热力图获得焦点，再用方向键）。",
    "all heads: arrow keys move between layers and heads": "所有的头：用方向键在层和头之间移动",
    "query ↓": "查询 ↓",
    "key →": "键 →",
    "All heads (rows: layers, columns: heads). Click one, or use the arrow keys, to open it above.":
      "所有的头（每行一层，每列一个头）。点击其中一个，或者用方向键，就会在上面打开它。",
    "layer {layer}, head {head}": "第 {layer} 层，第 {head} 个头",
    "attention of layer {layer}, head {head} over {n} characters; rows are queries, columns keys":
      "第 {layer} 层第 {head} 个头在 {n} 个字符上的注意力；行是查询，列是键",
    "On this text, layer {layer} head {head} puts on average {previous} on the previous character, {first} on the first character and {newline} on newlines (a head spreading evenly would put {uniform} on any one key).":
      "在这段文本上，第 {layer} 层第 {head} 个头平均把 {previous} 的权重放在前一个字符上，{first} 放在第一个字符上，{newline} 放在换行符上（均匀分配注意力的头在任何一个键上都会放 {uniform}）。",
    "the text is empty: type at least one character.": "文本是空的：请至少输入一个字符。",
    "the text has {n} characters; the explorer shows at most {max}: shorten it.": "文本有 {n} 个字符；探查器至多显示 {max} 个：请把它改短。",
    "The greyed maps show the previous text; fix the text above to redraw them.": "变灰的注意力图是上一段文本的；改好上面的文本才会重画。",
    "Fix the text above to draw its maps.": "改好上面的文本，才能画出它的注意力图。",
    "query {query} (position {i}) cannot see key {key} (position {j}): it is in the future (masked).":
      "查询 {query}（位置 {i}）看不到键 {key}（位置 {j}）：它在未来（被掩码遮住了）。",
    "query {query} (position {i}) → key {key} (position {j}): weight {weight} (layer {layer}, head {head})":
      "查询 {query}（位置 {i}）→ 键 {key}（位置 {j}）：权重 {weight}（第 {layer} 层，第 {head} 个头）"
  };
  function tr(english, fields) { return MG.tr(ZH, english, fields); }

  // viridis (matplotlib's default map, also used by minigpt.viz), 9 stops, linearly mixed:
  // dark purple = 0, yellow = 1, readable on light and dark pages alike.
  var VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  var LUT = (function () {                          // 256 colours, weight w -> LUT[round(255 w)]
    var lut = new Uint8Array(256 * 3);
    for (var n = 0; n < 256; n++) {
      var x = (n / 255) * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
      for (var c = 0; c < 3; c++) { lut[n * 3 + c] = Math.round(VIRIDIS[i][c] + f * (VIRIDIS[i + 1][c] - VIRIDIS[i][c])); }
    }
    return lut;
  })();
  MG.viridisGradient = function () {                 // the colour scale as a CSS gradient
    return "linear-gradient(to right, " + VIRIDIS.map(function (c, i) {
      return "rgb(" + c.join(",") + ") " + (100 * i / (VIRIDIS.length - 1)).toFixed(1) + "%";
    }).join(", ") + ")";
  };

  // One (T, T) map as an S x S image: S = T, or for S < T each pixel the largest weight of its
  // block of cells (max-pooling keeps thin lines such as the diagonal). Masked cells are clear.
  function mapImage(ctx, map, T, S) {
    var image = ctx.createImageData(S, S), data = image.data;
    for (var a = 0; a < S; a++) {
      var i0 = Math.floor(a * T / S), i1 = Math.max(i0 + 1, Math.floor((a + 1) * T / S));
      for (var b = 0; b <= a; b++) {
        var j0 = Math.floor(b * T / S), j1 = Math.max(j0 + 1, Math.floor((b + 1) * T / S)), best = -1;
        for (var i = i0; i < i1; i++) {
          for (var j = j0; j < j1 && j <= i; j++) { if (map[i * T + j] > best) { best = map[i * T + j]; } }
        }
        if (best < 0) { continue; }
        var n = Math.round(255 * Math.max(0, Math.min(1, best))) * 3, p = (a * S + b) * 4;
        data[p] = LUT[n]; data[p + 1] = LUT[n + 1]; data[p + 2] = LUT[n + 2]; data[p + 3] = 255;
      }
    }
    return image;
  }

  // How much of a head's attention goes where, on this text (queries i >= 1).
  function scores(map, chars) {
    var T = chars.length, previous = 0, first = 0, newline = 0, uniform = 0, rows = 0;
    for (var i = 1; i < T; i++) {
      uniform += 1 / (i + 1);                       // an even head's weight on any one key
      previous += map[i * T + i - 1];
      first += map[i * T];
      for (var j = 0; j <= i; j++) { if (chars[j] === "\n") { newline += map[i * T + j]; } }
      rows += 1;
    }
    return rows ? {previous: previous / rows, first: first / rows, newline: newline / rows,
                   uniform: uniform / rows} : null;
  }

  // Position ticks for a long text: a step from 1, 2, 5, 10, 20, ... leaving >= 22 px between labels.
  function tickStep(cell) {
    var steps = [1, 2, 5, 10, 20, 25, 50, 100];
    for (var s = 0; s < steps.length; s++) { if (steps[s] * cell >= 22) { return steps[s]; } }
    return 100;
  }

  MG.widgets.attention = function (node, model, config) {
    var cfg = model.config, tok = model.tokenizer;
    var maxChars = Math.min(config.max_chars, cfg.block_size);   // the model reads at most its window
    var header = el("div", {"class": "mg-caption", "data-mg": "model", text: MG.describeModel(model)});
    var uid = Math.random().toString(36).slice(2, 8);
    var preset = el("select", {id: "mg-preset-" + uid, "data-mg": "preset"});
    config.texts.forEach(function (t, i) {
      preset.appendChild(el("option", {value: String(i), text: t.label}));
    });
    preset.appendChild(el("option", {value: "own", text: tr("your own text")}));
    var text = el("textarea", {id: "mg-text-" + uid, rows: "2", "data-mg": "text", spellcheck: "false",
                               "aria-label": tr("text to explore (at most {n} characters)", {n: maxChars})});
    text.value = config.texts[0].text;
    var error = el("div", {"class": "mg-error", "data-mg": "text-error", "aria-live": "polite"});
    var layer = el("select", {id: "mg-layer-" + uid, "data-mg": "layer"});
    var head = el("select", {id: "mg-head-" + uid, "data-mg": "head"});
    for (var l = 0; l < cfg.n_layer; l++) { layer.appendChild(el("option", {value: String(l), text: String(l)})); }
    for (var h = 0; h < cfg.n_head; h++) { head.appendChild(el("option", {value: String(h), text: String(h)})); }
    layer.value = String(config.layer);
    head.value = String(config.head);
    // role "application": a screen reader in browse mode passes the arrow keys on to the map
    // (with role "img" it kept them), and the readout below says what the cursor is on
    var big = el("canvas", {"class": "mg-heatmap", tabindex: "0", "data-mg": "heatmap", role: "application",
                            "aria-roledescription": tr("attention map")});
    var scale = el("div", {"class": "mg-scale", "data-mg": "scale", "aria-hidden": "true"}, [
      el("span", {text: "0"}), el("span", {"class": "mg-scale-bar"}), el("span", {text: "1"}),
      el("span", {"class": "mg-caption", text: tr("attention weight")})]);
    scale.querySelector(".mg-scale-bar").style.background = MG.viridisGradient();
    var hint = tr("Hover over a square (or focus the map and use the arrow keys).");
    var readout = el("div", {"class": "mg-readout", "data-mg": "readout", "aria-live": "polite", text: hint});
    var headScores = el("div", {"class": "mg-caption", "data-mg": "head-scores"});
    var overview = el("div", {"class": "mg-overview", "data-mg": "overview", role: "radiogroup",
                              "aria-label": tr("all heads: arrow keys move between layers and heads")});
    var mapBox = el("div", {"class": "mg-heatmap-box", "data-mg": "map-box"}, [
      el("div", {"class": "mg-axes"}, [el("span", {"class": "mg-axis-query", text: tr("query ↓")}),
                                        el("span", {"class": "mg-axis-key", text: tr("key →")})]),
      big, scale]);
    node.appendChild(el("div", {"class": "mg-card"}, [
      header,
      el("div", {"class": "mg-row mg-wrap"}, [el("label", {"for": preset.id, text: tr("text")}), preset]),
      text, error,
      el("div", {"class": "mg-row mg-wrap"}, [el("label", {"for": layer.id, text: tr("layer")}), layer,
                                               el("label", {"for": head.id, text: tr("head")}), head]),
      mapBox, readout, headScores,
      el("div", {"class": "mg-panel-title", text: tr("All heads (rows: layers, columns: heads). " +
                                                    "Click one, or use the arrow keys, to open it above.")}),
      overview
    ]));

    // The thumbnails are made once; a new text redraws their pixels, a head switch none.
    var thumbs = [];
    overview.style.gridTemplateColumns = "repeat(" + cfg.n_head + ", minmax(0, 1fr))";
    for (l = 0; l < cfg.n_layer; l++) {
      thumbs.push([]);
      for (h = 0; h < cfg.n_head; h++) {
        // "L1 H3" under the thumbnail in every language (it must fit a phone's column); its
        // label and title say "layer 1, head 3" in the page's language.
        var canvas = el("canvas"), name = tr("layer {layer}, head {head}", {layer: l, head: h});
        var button = el("button", {type: "button", "class": "mg-thumb", role: "radio", "aria-checked": "false",
                                   tabindex: "-1", "data-layer": String(l), "data-head": String(h),
                                   "aria-label": name, title: name},
                        [canvas, el("span", {text: "L" + l + " H" + h})]);
        overview.appendChild(button);
        thumbs[l].push({button: button, canvas: canvas});
      }
    }

    var live = new MG.LiveMaps(model);
    var state = {chars: null, maps: null, images: null, cursor: null, cell: 0, margin: 0, size: 0,
                 thumbDraws: 0, bigDraws: 0, timing: null, stale: false};
    node.mgState = state;

    function current() { return state.maps[+layer.value][+head.value]; }

    function headImage(l, h) {                        // the (T, T) picture of one head, made once per text
      var key = l * cfg.n_head + h;
      if (!state.images[key]) {
        var T = state.chars.length, canvas = root.document.createElement("canvas");
        canvas.width = T;
        canvas.height = T;
        var ctx = canvas.getContext("2d");
        ctx.putImageData(mapImage(ctx, state.maps[l][h], T, T), 0, 0);
        state.images[key] = canvas;
      }
      return state.images[key];
    }

    function drawBig() {
      var T = state.chars.length, ratio = root.devicePixelRatio || 1, ctx = big.getContext("2d");
      var width = Math.max(160, Math.min(560, (node.clientWidth || 560) - 28));
      var labelled = (width - 22) / T >= 9;           // room for a character per row and column
      var margin = labelled ? Math.max(14, Math.min(22, width / T)) : 28;
      var cell = (width - margin) / T;
      state.margin = margin;
      state.labels = labelled ? "characters" : "positions";
      state.size = width;
      state.cell = cell;
      if (big.width !== Math.round(width * ratio)) {
        big.width = Math.round(width * ratio);
        big.height = Math.round(width * ratio);
        big.style.width = width + "px";
        big.style.height = width + "px";
      }
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, width);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(headImage(+layer.value, +head.value), margin, margin, T * cell, T * cell);
      var colour = root.getComputedStyle(big).color;
      ctx.fillStyle = colour;
      ctx.strokeStyle = colour;
      ctx.textBaseline = "middle";
      if (labelled) {                                 // the characters themselves
        ctx.font = Math.max(7, Math.min(14, cell * 0.8)) + "px monospace";
        ctx.textAlign = "center";
        for (var t = 0; t < T; t++) {
          var label = MG.showChar(state.chars[t]);
          ctx.fillText(label, margin + (t + 0.5) * cell, margin / 2);      // keys along the top
          ctx.fillText(label, margin / 2, margin + (t + 0.5) * cell);      // queries down the side
        }
      } else {                                        // position ticks: 0, 10, 20, ...
        var step = tickStep(cell);
        ctx.font = "10px sans-serif";
        ctx.lineWidth = 1;
        for (var p = 0; p < T; p += step) {
          var at = margin + (p + 0.5) * cell;
          ctx.textAlign = "center";
          ctx.fillText(String(p), at, margin / 2 - 2);
          ctx.textAlign = "right";
          ctx.fillText(String(p), margin - 5, at);
          ctx.beginPath();
          ctx.moveTo(at, margin - 4); ctx.lineTo(at, margin);
          ctx.moveTo(margin - 4, at); ctx.lineTo(margin, at);
          ctx.stroke();
        }
      }
      if (state.cursor) {
        ctx.lineWidth = 2;
        ctx.strokeRect(margin + state.cursor.j * cell, margin + state.cursor.i * cell, cell, cell);
      }
      state.bigDraws += 1;
      showReadout();
      big.setAttribute("aria-label", tr("attention of layer {layer}, head {head} over {n} characters; rows are queries, columns keys",
                                       {layer: layer.value, head: head.value, n: T}));
      var s = scores(current(), state.chars);
      headScores.textContent = s ? tr("On this text, layer {layer} head {head} puts on average {previous} on the previous " +
        "character, {first} on the first character and {newline} on newlines (a head spreading evenly would put " +
        "{uniform} on any one key).", {layer: layer.value, head: head.value, previous: s.previous.toFixed(2),
                                       first: s.first.toFixed(2), newline: s.newline.toFixed(2),
                                       uniform: s.uniform.toFixed(2)}) : "";
    }

    function drawThumbnails() {
      var T = state.chars.length, S = Math.min(T, THUMB);
      thumbs.forEach(function (row, l) {
        row.forEach(function (thumb, h) {
          thumb.canvas.width = S;
          thumb.canvas.height = S;
          var ctx = thumb.canvas.getContext("2d");
          ctx.putImageData(mapImage(ctx, state.maps[l][h], T, S), 0, 0);
          state.thumbDraws += 1;
        });
      });
    }

    function markSelected() {                          // the open head: one Tab stop in the overview
      thumbs.forEach(function (row, l) {
        row.forEach(function (thumb, h) {
          var on = l === +layer.value && h === +head.value;
          thumb.button.classList.toggle("mg-selected", on);
          thumb.button.setAttribute("aria-checked", on ? "true" : "false");
          thumb.button.setAttribute("tabindex", on ? "0" : "-1");
        });
      });
    }

    function setStale(stale) {
      state.stale = stale;
      mapBox.classList.toggle("mg-stale", stale);
      overview.classList.toggle("mg-stale", stale);
      headScores.classList.toggle("mg-stale", stale);
    }

    function compute() {
      error.textContent = "";
      var ids, maps, chars = Array.from(text.value), started = root.performance.now();
      try {
        if (chars.length === 0) { throw new Error(tr("the text is empty: type at least one character.")); }
        if (chars.length > maxChars) {
          throw new Error(tr("the text has {n} characters; the explorer shows at most {max}: shorten it.",
                            {n: chars.length, max: maxChars}));
        }
        ids = tok.encode(text.value);
        maps = live.update(ids);                     // inside the try: its error is shown too
      } catch (e) {
        error.textContent = e.position === undefined ? e.message : MG.unknownCharacter(e, model, 0);
        setStale(true);
        state.cursor = null;
        readout.removeAttribute("data-query");
        readout.removeAttribute("data-key");
        readout.textContent = state.maps ? tr("The greyed maps show the previous text; fix the text above to redraw them.")
                                         : tr("Fix the text above to draw its maps.");
        return;
      }
      state.maps = maps;
      var computed = root.performance.now();
      state.chars = chars;
      state.images = [];
      state.cursor = null;                            // a cursor on the old text would name its characters
      readout.removeAttribute("data-query");
      readout.removeAttribute("data-key");
      readout.textContent = hint;
      setStale(false);
      drawBig();
      drawThumbnails();
      state.timing = {chars: chars.length, positions: live.computed, computeMs: computed - started,
                      drawMs: root.performance.now() - computed};
    }

    function read(i, j) {                            // move the cursor to query i, key j
      if (state.stale || !state.chars) { return; }  // no map yet: the first text had an error
      var T = state.chars.length;
      if (i < 0 || j < 0 || i >= T || j >= T) { return; }
      state.cursor = {i: i, j: j};
      drawBig();
    }

    function showReadout() {                         // what the cursor points at, in this head
      var c = state.cursor, T = state.chars.length;
      if (!c) { return; }
      var q = JSON.stringify(state.chars[c.i]), k = JSON.stringify(state.chars[c.j]);
      readout.setAttribute("data-query", String(c.i));
      readout.setAttribute("data-key", String(c.j));
      var fields = {query: q, i: c.i, key: k, j: c.j, layer: layer.value, head: head.value};
      if (c.j <= c.i) { fields.weight = current()[c.i * T + c.j].toFixed(4); }
      readout.textContent = c.j > c.i
        ? tr("query {query} (position {i}) cannot see key {key} (position {j}): it is in the future (masked).", fields)
        : tr("query {query} (position {i}) → key {key} (position {j}): weight {weight} (layer {layer}, head {head})", fields);
    }

    function openHead(l, h, focusThumb) {
      layer.value = String(l);
      head.value = String(h);
      markSelected();
      if (state.maps) { drawBig(); }
      if (focusThumb) { thumbs[l][h].button.focus(); }
    }

    big.addEventListener("mousemove", function (event) {
      var box = big.getBoundingClientRect();
      var j = Math.floor((event.clientX - box.left - state.margin) / state.cell);
      var i = Math.floor((event.clientY - box.top - state.margin) / state.cell);
      if (!state.cursor || state.cursor.i !== i || state.cursor.j !== j) { read(i, j); }
    });
    big.addEventListener("keydown", function (event) {
      if (!state.chars) { return; }
      var c = state.cursor || {i: 0, j: 0}, T = state.chars.length;
      var move = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]}[event.key];
      if (!move) { return; }
      event.preventDefault();
      read(Math.max(0, Math.min(T - 1, c.i + move[0])), Math.max(0, Math.min(T - 1, c.j + move[1])));
    });
    big.addEventListener("focus", function () { if (!state.cursor) { read(0, 0); } });
    overview.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest(".mg-thumb") : null;
      if (!button) { return; }
      openHead(+button.getAttribute("data-layer"), +button.getAttribute("data-head"), false);
      big.focus();
    });
    overview.addEventListener("keydown", function (event) {
      var move = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]}[event.key];
      if (!move) { return; }
      event.preventDefault();
      var l = Math.max(0, Math.min(cfg.n_layer - 1, +layer.value + move[0]));
      var h = Math.max(0, Math.min(cfg.n_head - 1, +head.value + move[1]));
      openHead(l, h, true);
    });
    [layer, head].forEach(function (select) {
      select.addEventListener("change", function () { openHead(+layer.value, +head.value, false); });
    });
    preset.addEventListener("change", function () {
      if (preset.value !== "own") { text.value = config.texts[+preset.value].text; compute(); }
      else { text.focus(); }
    });
    var debounce = null;
    text.addEventListener("input", function () {
      preset.value = "own";
      root.clearTimeout(debounce);
      debounce = root.setTimeout(compute, 150);
    });
    var resize = null;
    root.addEventListener("resize", function () {          // thumbnails scale by CSS alone
      root.clearTimeout(resize);
      resize = root.setTimeout(function () { if (state.maps) { drawBig(); } }, 150);
    });
    markSelected();
    compute();
  };

  if (MG.mountAll) { MG.mountAll(); }
})(typeof globalThis !== "undefined" ? globalThis : this);
