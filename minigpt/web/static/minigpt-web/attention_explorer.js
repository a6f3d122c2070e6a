/* Chapter 10's attention explorer: every head of the model, on the reader's own text.
 *
 * model.attentionMaps(ids) returns maps[layer][head], a (T, T) Float32Array (row = query
 * position, column = key position), the same numbers as MiniGPT.attention_maps. The big view
 * draws one head with the characters on both axes; hovering (or moving with the arrow keys)
 * reads out query character, key character and weight. The overview draws all heads small;
 * each square is a button that opens that head in the big view.
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};
  MG.widgets = MG.widgets || {};
  var el = function (t, a, c) { return MG.el(t, a, c); };

  // viridis (matplotlib's default map, also used by minigpt.viz), 9 stops, linearly mixed:
  // dark purple = 0, yellow = 1, readable on light and dark pages alike.
  var VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  function colour(w) {
    var x = Math.max(0, Math.min(1, w)) * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    var f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (c) { return Math.round(a[c] + f * (b[c] - a[c])); }).join(",") + ")";
  }

  // Draw one (T, T) map into a canvas of `size` CSS pixels, leaving `margin` for labels.
  function drawMap(canvas, map, T, size, margin, labels, cursor) {
    var ratio = root.devicePixelRatio || 1, ctx = canvas.getContext("2d");
    canvas.width = Math.round(size * ratio);
    canvas.height = Math.round(size * ratio);
    canvas.style.width = size + "px";
    canvas.style.height = size + "px";
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, size, size);
    var cell = (size - margin) / T;
    for (var i = 0; i < T; i++) {
      for (var j = 0; j <= i; j++) {               // the upper triangle is masked: left blank
        ctx.fillStyle = colour(map[i * T + j]);
        ctx.fillRect(margin + j * cell, margin + i * cell, Math.ceil(cell), Math.ceil(cell));
      }
    }
    if (labels) {
      var style = root.getComputedStyle(canvas), font = Math.max(7, Math.min(14, cell * 0.8));
      ctx.fillStyle = style.color;
      ctx.font = font + "px monospace";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      var every = Math.ceil(8 / cell);             // thin the labels when cells get tiny
      for (var t = 0; t < T; t += every) {
        var label = MG.showChar(labels[t]);
        ctx.fillText(label, margin + (t + 0.5) * cell, margin / 2);      // keys along the top
        ctx.fillText(label, margin / 2, margin + (t + 0.5) * cell);      // queries down the side
      }
    }
    if (cursor) {
      ctx.strokeStyle = root.getComputedStyle(canvas).color;
      ctx.lineWidth = 2;
      ctx.strokeRect(margin + cursor.j * cell, margin + cursor.i * cell, cell, cell);
    }
    return cell;
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

  MG.widgets.attention = function (node, model, config) {
    var cfg = model.config, tok = model.tokenizer, maxChars = config.max_chars;
    var header = el("div", {"class": "mg-caption", "data-mg": "model", text: "Model: " + MG.describeModel(model)});
    var uid = Math.random().toString(36).slice(2, 8);
    var preset = el("select", {id: "mg-preset-" + uid, "data-mg": "preset"});
    config.texts.forEach(function (t, i) {
      preset.appendChild(el("option", {value: String(i), text: t.label}));
    });
    preset.appendChild(el("option", {value: "own", text: "your own text"}));
    var text = el("textarea", {id: "mg-text-" + uid, rows: "2", maxlength: String(maxChars), "data-mg": "text",
                               spellcheck: "false"});
    text.value = config.texts[0].text;
    var error = el("div", {"class": "mg-error", "data-mg": "text-error", role: "alert"});
    var layer = el("select", {id: "mg-layer-" + uid, "data-mg": "layer"});
    var head = el("select", {id: "mg-head-" + uid, "data-mg": "head"});
    for (var l = 0; l < cfg.n_layer; l++) { layer.appendChild(el("option", {value: String(l), text: String(l)})); }
    for (var h = 0; h < cfg.n_head; h++) { head.appendChild(el("option", {value: String(h), text: String(h)})); }
    layer.value = String(config.layer);
    head.value = String(config.head);
    var big = el("canvas", {"class": "mg-heatmap", tabindex: "0", "data-mg": "heatmap", role: "img"});
    var readout = el("div", {"class": "mg-readout", "data-mg": "readout", "aria-live": "polite",
                             text: "Hover over a square (or focus the map and use the arrow keys)."});
    var headScores = el("div", {"class": "mg-caption", "data-mg": "head-scores"});
    var overview = el("div", {"class": "mg-overview", "data-mg": "overview"});
    node.appendChild(el("div", {"class": "mg-card"}, [
      header,
      el("div", {"class": "mg-row mg-wrap"}, [el("label", {"for": preset.id, text: "text"}), preset]),
      text, error,
      el("div", {"class": "mg-row mg-wrap"}, [el("label", {"for": layer.id, text: "layer"}), layer,
                                               el("label", {"for": head.id, text: "head"}), head]),
      el("div", {"class": "mg-heatmap-box"}, [big]), readout, headScores,
      el("div", {"class": "mg-panel-title", text: "All heads (rows: layers, columns: heads). " +
                 "Click one to open it above."}),
      overview
    ]));

    var state = {chars: null, maps: null, cursor: null, cell: 0, margin: 0, size: 0};
    node.mgState = state;

    function current() { return state.maps[+layer.value][+head.value]; }

    function drawBig() {
      var T = state.chars.length;
      var width = Math.min(560, node.clientWidth || 560);
      state.margin = Math.max(14, Math.min(22, width / T));
      state.size = width;
      state.cell = drawMap(big, current(), T, width, state.margin, state.chars, state.cursor);
      showReadout();
      big.setAttribute("aria-label", "attention of layer " + layer.value + ", head " + head.value +
                       " over " + T + " characters");
      var s = scores(current(), state.chars);
      headScores.textContent = s ? "On this text, layer " + layer.value + " head " + head.value +
        " puts on average " + s.previous.toFixed(2) + " on the previous character, " + s.first.toFixed(2) +
        " on the first character and " + s.newline.toFixed(2) + " on newlines (a head spreading evenly would put " + s.uniform.toFixed(2) + " on any one key)." : "";
    }

    function drawOverview() {
      overview.textContent = "";
      var T = state.chars.length;
      var thumb = Math.max(24, Math.min(56, Math.floor(((node.clientWidth || 480) - 40) / cfg.n_head) - 8));
      overview.style.gridTemplateColumns = "repeat(" + cfg.n_head + ", minmax(0, 1fr))";
      for (var l = 0; l < cfg.n_layer; l++) {
        for (var h = 0; h < cfg.n_head; h++) {
          var button = el("button", {type: "button", "class": "mg-thumb", "data-layer": String(l),
                                     "data-head": String(h), "aria-label": "layer " + l + ", head " + h,
                                     title: "layer " + l + ", head " + h});
          if (l === +layer.value && h === +head.value) { button.classList.add("mg-selected"); }
          var canvas = el("canvas");
          button.appendChild(canvas);
          button.appendChild(el("span", {text: "L" + l + " H" + h}));
          overview.appendChild(button);
          drawMap(canvas, state.maps[l][h], T, thumb, 0, null, null);
        }
      }
    }

    function compute() {
      error.textContent = "";
      var ids;
      try {
        ids = tok.encode(text.value);
        if (ids.length === 0) { throw new Error("the text is empty: type at least one character."); }
      } catch (e) {
        error.textContent = e.message;
        return;
      }
      state.chars = Array.from(text.value);
      state.maps = model.attentionMaps(ids);
      state.cursor = null;
      drawBig();
      drawOverview();
    }

    function read(i, j) {                            // move the cursor to query i, key j
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
      readout.textContent = c.j > c.i
        ? "query " + q + " (position " + c.i + ") cannot see key " + k + " (position " + c.j +
          "): it is in the future (masked)."
        : "query " + q + " (position " + c.i + ") → key " + k + " (position " + c.j + "): weight " +
          current()[c.i * T + c.j].toFixed(4) + " (layer " + layer.value + ", head " + head.value + ")";
    }

    big.addEventListener("mousemove", function (event) {
      var box = big.getBoundingClientRect();
      var j = Math.floor((event.clientX - box.left - state.margin) / state.cell);
      var i = Math.floor((event.clientY - box.top - state.margin) / state.cell);
      if (!state.cursor || state.cursor.i !== i || state.cursor.j !== j) { read(i, j); }
    });
    big.addEventListener("keydown", function (event) {
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
      layer.value = button.getAttribute("data-layer");
      head.value = button.getAttribute("data-head");
      drawBig();
      drawOverview();
      big.focus();
    });
    [layer, head].forEach(function (select) {
      select.addEventListener("change", function () { drawBig(); drawOverview(); });
    });
    preset.addEventListener("change", function () {
      if (preset.value !== "own") { text.value = config.texts[+preset.value].text; compute(); }
      else { text.focus(); }
    });
    var debounce = null;
    text.addEventListener("input", function () {
      preset.value = "own";
      root.clearTimeout(debounce);
      debounce = root.setTimeout(compute, 300);
    });
    var resize = null;
    root.addEventListener("resize", function () {
      root.clearTimeout(resize);
      resize = root.setTimeout(function () { if (state.maps) { drawBig(); drawOverview(); } }, 150);
    });
    compute();
  };

  if (MG.mountAll) { MG.mountAll(); }
})(typeof globalThis !== "undefined" ? globalThis : this);
