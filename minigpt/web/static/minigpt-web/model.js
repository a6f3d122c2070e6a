/* minigpt in the browser: the inference half of minigpt/model.py, in plain JavaScript.
 *
 * Same names and shapes as the Python. B is always 1 here, so a "(T, C)" array is a
 * Float32Array of T * C numbers, row t at offset t * C. Sums are accumulated in JavaScript
 * numbers (float64) and stored as float32, so the logits agree with PyTorch's float32 ones to
 * about 1e-5 (the tests check <= 1e-4).
 *
 * The file is cut into blocks (tokenizer, weights, positions, layernorm, linear, attention,
 * mlp, block, model, generate), each opened by a "block:" marker comment; the appendix
 * "The same GPT in JavaScript" shows each one
 * beside its Python twin. No dependencies, no build step: load it with a <script> tag.
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};

  // [block:tokenizer] ------------------------------------------------------------------
  // CharTokenizer: one id per character of a fixed vocabulary (minigpt/data.py).
  function CharTokenizer(chars) {
    this.chars = Array.from(chars);
    this.stoi = {};
    for (var i = 0; i < this.chars.length; i++) { this.stoi[this.chars[i]] = i; }
    this.vocabSize = this.chars.length;
  }
  // Text -> ids. An unknown character raises, naming it and its position, like Python's
  // UnknownCharacterError. Positions count characters (code points), as Python does.
  CharTokenizer.prototype.encode = function (text) {
    var ids = [], chars = Array.from(text);
    for (var position = 0; position < chars.length; position++) {
      var ch = chars[position], id = this.stoi[ch];
      if (id === undefined) {
        var code = ch.codePointAt(0).toString(16).toUpperCase();
        while (code.length < 4) { code = "0" + code; }
        var err = new Error("character " + pyRepr(ch) + " (U+" + code + ") at position " +
          position + " is not in this model's " + this.vocabSize + "-character vocabulary. " +
          "Remove or replace it.");
        err.position = position;
        err.character = ch;
        throw err;
      }
      ids.push(id);
    }
    return ids;
  };
  function pyRepr(ch) {                         // how Python's repr() quotes one character
    var escaped = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}[ch];
    if (escaped) { return "'" + escaped + "'"; }
    return ch === "'" ? "\"'\"" : "'" + ch + "'";
  }
  CharTokenizer.prototype.decode = function (ids) {
    var self = this;
    return ids.map(function (i) { return self.chars[i]; }).join("");
  };
  MG.CharTokenizer = CharTokenizer;

  // [block:weights] --------------------------------------------------------------------
  // The asset written by minigpt.web.export_web stores each tensor as base64 bytes:
  // float32, float16, or int8 with one float32 scale per row (weight = q * scale[row]).
  // Vectors and embedding tables are expanded to float32 once, at load time. The matrices
  // that `linear` multiplies by stay int8 when they arrive int8 (see decodeMatrix).
  function base64Bytes(text) {
    var binary = root.atob ? root.atob(text) : Buffer.from(text, "base64").toString("binary");
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes;
  }
  function halfToFloat(h) {                        // IEEE 754 binary16 -> number
    var sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff;
    if (exponent === 0) { return sign * fraction * Math.pow(2, -24); }
    if (exponent === 31) { return fraction ? NaN : sign * Infinity; }
    return sign * (1 + fraction / 1024) * Math.pow(2, exponent - 15);
  }
  function decodeTensor(t) {
    var n = t.shape.reduce(function (a, b) { return a * b; }, 1);
    var bytes = base64Bytes(t.data), out = new Float32Array(n), i;
    if (t.dtype === "float32") {
      out.set(new Float32Array(bytes.buffer, 0, n));
    } else if (t.dtype === "float16") {
      var halves = new Uint16Array(bytes.buffer, 0, n);
      for (i = 0; i < n; i++) { out[i] = halfToFloat(halves[i]); }
    } else if (t.dtype === "int8") {
      var q = new Int8Array(bytes.buffer, 0, n);
      var scales = new Float32Array(base64Bytes(t.scale).buffer);
      var cols = n / scales.length;
      for (i = 0; i < n; i++) { out[i] = q[i] * scales[(i / cols) | 0]; }   // rounded to float32 once
    } else {
      throw new Error("unknown tensor dtype " + t.dtype + " in the model asset");
    }
    return out;
  }
  // A (N, K) weight matrix for `linear`: {w, scale}. An int8 matrix keeps its int8 values
  // and applies the row's scale once per output (sum_k x[k] * q[k]) * scale: a quarter of
  // the bytes to stream through the CPU per token, and on a 2-core machine generation is
  // limited by that stream (bench/web_node_speed.js measures it). Other dtypes: scale = null.
  function decodeMatrix(t) {
    if (t.dtype !== "int8") { return {w: decodeTensor(t), scale: null}; }
    var n = t.shape[0] * t.shape[1];
    return {w: new Int8Array(base64Bytes(t.data).buffer, 0, n), scale: new Float32Array(base64Bytes(t.scale).buffer)};
  }

  // [block:positions] ------------------------------------------------------------------
  // Learned positions are a weight (wpe). The two fixed encodings are computed here with the
  // formulas of minigpt/positions.py.
  function sinusoidalTable(nPositions, dim) {     // (P, C): sin on even channels, cos on odd
    var table = new Float32Array(nPositions * dim);
    for (var pos = 0; pos < nPositions; pos++) {
      for (var i = 0; i < dim; i += 2) {
        // every step rounded to float32 as torch computes it: at position 255 an angle kept in
        // float64 drifted 2e-5 from PyTorch's table
        var invFreq = Math.fround(Math.exp(Math.fround(i * Math.fround(-Math.log(10000.0) / dim))));
        var angle = Math.fround(pos * invFreq);
        table[pos * dim + i] = Math.sin(angle);
        if (i + 1 < dim) { table[pos * dim + i + 1] = Math.cos(angle); }
      }
    }
    return table;
  }
  function ropeCosSin(nPositions, headDim, base) {  // each (P, D/2): angle = pos * base^(-2i/D)
    var half = headDim / 2, cos = new Float32Array(nPositions * half), sin = new Float32Array(nPositions * half);
    for (var pos = 0; pos < nPositions; pos++) {
      for (var i = 0; i < half; i++) {
        var invFreq = Math.fround(1.0 / Math.fround(Math.pow(base, (2 * i) / headDim)));
        var angle = Math.fround(pos * invFreq);
        cos[pos * half + i] = Math.cos(angle);
        sin[pos * half + i] = Math.sin(angle);
      }
    }
    return {cos: cos, sin: sin};
  }
  // RoPE with the package's *interleaved* pair convention: channels (2i, 2i+1) of one head
  // form a pair, rotated by angle pos * theta_i (not the rotate-half pairing (i, i + D/2)).
  function applyRope(vec, offset, headDim, pos, rope) {
    var half = headDim / 2;
    for (var i = 0; i < half; i++) {
      var c = rope.cos[pos * half + i], s = rope.sin[pos * half + i];
      var even = vec[offset + 2 * i], odd = vec[offset + 2 * i + 1];
      vec[offset + 2 * i] = even * c - odd * s;
      vec[offset + 2 * i + 1] = even * s + odd * c;
    }
  }

  // [block:layernorm] ------------------------------------------------------------------
  // nn.LayerNorm(C): per row, subtract the mean, divide by sqrt(biased variance + 1e-5),
  // then scale and shift. x (T, C) -> out (T, C).
  function layerNorm(x, T, C, weight, bias, out) {
    for (var t = 0; t < T; t++) {
      var row = t * C, mean = 0, variance = 0, i;
      for (i = 0; i < C; i++) { mean += x[row + i]; }
      mean /= C;
      for (i = 0; i < C; i++) { var d = x[row + i] - mean; variance += d * d; }
      var inv = 1 / Math.sqrt(variance / C + 1e-5);
      for (i = 0; i < C; i++) {
        out[row + i] = (x[row + i] - mean) * inv * weight[i] + (bias ? bias[i] : 0);
      }
    }
    return out;
  }

  // [block:linear] ---------------------------------------------------------------------
  // nn.Linear: out (T, N) = x (T, K) @ W^T + b, with W stored (N, K) like PyTorch, so each
  // output is a dot product of two contiguous rows. M is a matrix from decodeMatrix: its
  // int8 or float32 values M.w, and for int8 the row scales M.scale (applied once per output).
  // `rows` (default N) computes only the first `rows` outputs of each position (the attention
  // explorer's last layer needs only c_attn's queries and keys); out keeps its row stride N.
  //
  // One position (a generated token) is a dot product per output, summed eight products at a
  // time in eight accumulators, which lets the JavaScript engine overlap them (K is a multiple
  // of 8 in practice; a tail loop handles the rest). This is most of a generated token's time.
  function dot(x, xr, W, wr, K) {                  // sum_k x[xr + k] * W[wr + k]
    var K8 = K - (K % 8), s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, k = 0;
    for (; k < K8; k += 8) {
      var xk = xr + k, wk = wr + k;
      s0 += x[xk] * W[wk];
      s1 += x[xk + 1] * W[wk + 1];
      s2 += x[xk + 2] * W[wk + 2];
      s3 += x[xk + 3] * W[wk + 3];
      s4 += x[xk + 4] * W[wk + 4];
      s5 += x[xk + 5] * W[wk + 5];
      s6 += x[xk + 6] * W[wk + 6];
      s7 += x[xk + 7] * W[wk + 7];
    }
    for (; k < K; k++) { s0 += x[xr + k] * W[wr + k]; }
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
  }
  // Many positions (a prompt, an explorer's text) go in tiles of 4 positions x 4 outputs:
  // each step of k loads 4 inputs and 4 weights (8 numbers) for 16 products, where separate
  // dot products load 2 numbers per product: the linear layers of a 128-character pass went
  // from about 255 to 215 ms in node (one idle core, profiled). The loop stays scalar (plain
  // JavaScript has no float vectors) and the sums float64, so the results do not change.
  function linear(x, T, K, M, b, N, out, rows) {
    var W = M.w, scale = M.scale, R = rows === undefined ? N : rows;
    var T4 = T - (T % 4), R4 = R - (R % 4), t, n;
    function put(t, n, sum) { out[t * N + n] = (b ? b[n] : 0) + sum * (scale ? scale[n] : 1); }
    for (n = 0; n < R4; n += 4) {
      var w0 = n * K, w1 = w0 + K, w2 = w1 + K, w3 = w2 + K;
      for (t = 0; t < T4; t += 4) {
        var x0 = t * K, x1 = x0 + K, x2 = x1 + K, x3 = x2 + K;
        var a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;   // a: output n, b: n + 1, ...
        var c0 = 0, c1 = 0, c2 = 0, c3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;   // 0..3: positions t .. t + 3
        for (var k = 0; k < K; k++) {
          var p0 = x[x0 + k], p1 = x[x1 + k], p2 = x[x2 + k], p3 = x[x3 + k];
          var q0 = W[w0 + k], q1 = W[w1 + k], q2 = W[w2 + k], q3 = W[w3 + k];
          a0 += p0 * q0; a1 += p1 * q0; a2 += p2 * q0; a3 += p3 * q0;
          b0 += p0 * q1; b1 += p1 * q1; b2 += p2 * q1; b3 += p3 * q1;
          c0 += p0 * q2; c1 += p1 * q2; c2 += p2 * q2; c3 += p3 * q2;
          d0 += p0 * q3; d1 += p1 * q3; d2 += p2 * q3; d3 += p3 * q3;
        }
        put(t, n, a0); put(t, n + 1, b0); put(t, n + 2, c0); put(t, n + 3, d0);
        put(t + 1, n, a1); put(t + 1, n + 1, b1); put(t + 1, n + 2, c1); put(t + 1, n + 3, d1);
        put(t + 2, n, a2); put(t + 2, n + 1, b2); put(t + 2, n + 2, c2); put(t + 2, n + 3, d2);
        put(t + 3, n, a3); put(t + 3, n + 1, b3); put(t + 3, n + 2, c3); put(t + 3, n + 3, d3);
      }
    }
    for (t = 0; t < T; t++) {                      // what the tiles leave: every output of the
      for (n = t < T4 ? R4 : 0; n < R; n++) {       // last T % 4 positions, the last R % 4 of the others
        put(t, n, dot(x, t * K, W, n * K, K));
      }
    }
    return out;
  }

  // [block:attention] ------------------------------------------------------------------
  // Causal self-attention for T new positions after `cache.length` cached ones.
  // qkv (T, C + 2 * Hkv * D) is c_attn's output: queries, then keys, then values.
  // The new keys and values are appended to the cache (Hkv, block_size, D), so each
  // generated token costs one row of work instead of the whole prefix.
  // Returns y (T, C), the heads side by side; fills weights[h] (T, S) when asked. With
  // y = null it computes the weights only (the explorer's last layer: no values are needed).
  // `scratch` holds the model's reusable buffers (scores): no allocation per token.
  function KVCache(nKvHead, maxLen, headDim) {
    this.k = new Float32Array(nKvHead * maxLen * headDim);
    this.v = new Float32Array(nKvHead * maxLen * headDim);
    this.maxLen = maxLen;
    this.length = 0;
  }
  // A copy to decode from, so the original (a prompt's prefill) stays reusable.
  KVCache.prototype.clone = function () {
    var copy = Object.create(KVCache.prototype);
    copy.k = this.k.slice();
    copy.v = this.v.slice();
    copy.maxLen = this.maxLen;
    copy.length = this.length;
    return copy;
  };
  MG.KVCache = KVCache;

  function attention(qkv, T, cfg, cache, rope, y, weights, scratch) {
    var H = cfg.n_head, Hkv = cfg.n_kv_head, D = cfg.n_embd / H, C = cfg.n_embd;
    var width = C + 2 * Hkv * D, start = cache.length, S = start + T, maxLen = cache.maxLen;
    if (S > maxLen) { throw new Error("KV cache overflow: " + S + " positions > capacity " + maxLen); }
    var t, h, d, j;
    if (rope) {                                     // rotate q and k by their absolute positions
      for (t = 0; t < T; t++) {
        for (h = 0; h < H; h++) { applyRope(qkv, t * width + h * D, D, start + t, rope); }
        for (h = 0; h < Hkv; h++) { applyRope(qkv, t * width + C + h * D, D, start + t, rope); }
      }
    }
    var keys = cache.k, values = cache.v;
    for (t = 0; t < T; t++) {                       // append k, v: (Hkv, S, D) layout
      for (h = 0; h < Hkv; h++) {
        var dst = (h * maxLen + start + t) * D, src = t * width + C + h * D;
        for (d = 0; d < D; d++) { keys[dst + d] = qkv[src + d]; }
        if (y) { for (d = 0; d < D; d++) { values[dst + d] = qkv[src + Hkv * D + d]; } }
      }
    }
    cache.length = S;
    var scale = 1 / Math.sqrt(D), group = H / Hkv, scores = scratch.scores, D4 = D - (D % 4);
    for (h = 0; h < H; h++) {
      var kvBase = Math.floor(h / group) * maxLen * D;   // query heads share kv heads (GQA)
      for (t = 0; t < T; t++) {
        var q = t * width + h * D, visible = start + t + 1;   // causal: keys 0 .. start + t only
        var max = -Infinity;
        for (j = 0; j < visible; j++) {             // q . k, four products at a time (as linear)
          var kr = kvBase + j * D, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (d = 0; d < D4; d += 4) {
            s0 += qkv[q + d] * keys[kr + d];
            s1 += qkv[q + d + 1] * keys[kr + d + 1];
            s2 += qkv[q + d + 2] * keys[kr + d + 2];
            s3 += qkv[q + d + 3] * keys[kr + d + 3];
          }
          for (; d < D; d++) { s0 += qkv[q + d] * keys[kr + d]; }
          scores[j] = Math.fround(((s0 + s1) + (s2 + s3)) * scale);
          if (scores[j] > max) { max = scores[j]; }
        }
        var total = 0;
        for (j = 0; j < visible; j++) { scores[j] = Math.exp(scores[j] - max); total += scores[j]; }
        for (j = 0; j < visible; j++) { scores[j] /= total; }          // the softmax weights
        if (weights) {
          var row = weights[h], at = t * S;
          for (j = 0; j < visible; j++) { row[at + j] = scores[j]; }
        }
        if (!y) { continue; }
        // y = weights @ values, four channels at a time: each weight is read once for four
        // sums, each sum runs over j in order (so the same numbers as one channel at a time).
        var out = t * C + h * D;
        for (d = 0; d < D4; d += 4) {
          var y0 = 0, y1 = 0, y2 = 0, y3 = 0;
          for (j = 0; j < visible; j++) {
            var w = scores[j], vr = kvBase + j * D + d;
            y0 += w * values[vr]; y1 += w * values[vr + 1]; y2 += w * values[vr + 2]; y3 += w * values[vr + 3];
          }
          y[out + d] = y0; y[out + d + 1] = y1; y[out + d + 2] = y2; y[out + d + 3] = y3;
        }
        for (; d < D; d++) {
          var yd = 0;
          for (j = 0; j < visible; j++) { yd += scores[j] * values[kvBase + j * D + d]; }
          y[out + d] = yd;
        }
      }
    }
    return y;
  }

  // [block:mlp] ------------------------------------------------------------------------
  // MLP: C -> 4C -> GELU -> C. GELU is the exact one by default, x * Phi(x) =
  // 0.5 x (1 + erf(x / sqrt 2)), as nn.GELU() computes it. JavaScript has no Math.erf: this
  // is the classic Chebyshev fit of erfc (Numerical Recipes' erfcc), fractional error below
  // 1.2e-7 everywhere, about the rounding error of float32 itself, at the cost of one exp.
  function erf(x) {
    var z = Math.abs(x), t = 1 / (1 + 0.5 * z);
    var erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
      t * (-0.82215223 + t * 0.17087277)))))))));
    return x >= 0 ? 1 - erfc : erfc - 1;
  }
  function gelu(v) { return 0.5 * v * (1 + erf(v / Math.SQRT2)); }
  // GPT-2's tanh approximation, nn.GELU(approximate="tanh") (config.gelu === "tanh"): it
  // differs from the exact GELU by up to ~5e-4, so a model trained with it must run with it.
  var TANH_SCALE = Math.sqrt(2 / Math.PI);
  function geluTanh(v) { return 0.5 * v * (1 + Math.tanh(TANH_SCALE * (v + 0.044715 * v * v * v))); }

  function mlp(x, T, C, p, hidden, out, activation) {
    linear(x, T, C, p.c_fc_w, p.c_fc_b, 4 * C, hidden);             // (T, 4C)
    for (var i = 0; i < T * 4 * C; i++) { hidden[i] = activation(hidden[i]); }
    return linear(hidden, T, 4 * C, p.c_proj_w, p.c_proj_b, C, out); // (T, C)
  }

  // [block:block] ----------------------------------------------------------------------
  // One Transformer block. Pre-LN (default): x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)).
  // Post-LN: x = ln_1(x + attn(x)); x = ln_2(x + mlp(x)).
  // `scratch` holds buffers for up to block_size rows (h, qkv, y, out, hidden): a block
  // uses their first T rows and allocates nothing. With `weightsOnly` (the attention
  // explorer's last block) it stops at the attention weights: c_attn's queries and keys
  // only, no values, no c_proj, no MLP (a seventh of the explorer's pass), x unchanged.
  function block(x, T, cfg, p, cache, rope, weights, scratch, weightsOnly) {
    var C = cfg.n_embd, D = C / cfg.n_head, width = C + 2 * cfg.n_kv_head * D, i;
    var h = scratch.h, qkv = scratch.qkv, y = scratch.y, out = scratch.out, hidden = scratch.hidden;
    var pre = cfg.norm !== "post";
    var input = pre ? layerNorm(x, T, C, p.ln_1_w, p.ln_1_b, h) : x;
    if (weightsOnly) {
      linear(input, T, C, p.c_attn_w, p.c_attn_b, width, qkv, C + cfg.n_kv_head * D);
      attention(qkv, T, cfg, cache, rope, null, weights, scratch);
      return x;
    }
    linear(input, T, C, p.c_attn_w, p.c_attn_b, width, qkv);
    attention(qkv, T, cfg, cache, rope, y, weights, scratch);
    linear(y, T, C, p.attn_proj_w, p.attn_proj_b, C, out);           // attn.c_proj mixes heads
    for (i = 0; i < T * C; i++) { x[i] += out[i]; }
    if (!pre) { layerNorm(x, T, C, p.ln_1_w, p.ln_1_b, x); }
    input = pre ? layerNorm(x, T, C, p.ln_2_w, p.ln_2_b, h) : x;
    mlp(input, T, C, p, hidden, out, cfg.gelu === "tanh" ? geluTanh : gelu);
    for (i = 0; i < T * C; i++) { x[i] += out[i]; }
    if (!pre) { layerNorm(x, T, C, p.ln_2_w, p.ln_2_b, x); }
    return x;
  }

  // [block:model] ----------------------------------------------------------------------
  // MiniGPT: token embedding (+ positions), the blocks, ln_f, and the tied head
  // (logits = ln_f(x) @ wte^T: the input embedding matrix, reused as the output layer).
  function Model(asset) {
    if (!asset || asset.format !== "minigpt-web") {
      throw new Error("not a minigpt web asset: write one with minigpt.web.export_web");
    }
    if (asset.version !== 1) {                     // a later layout would be misread, silently
      throw new Error("this model file has format version " + asset.version + ", and this page reads " +
                      "version 1: export it again with this version of minigpt (minigpt.web.export_web)");
    }
    var cfg = this.config = asset.config;
    this.name = asset.name;
    this.quantize = asset.quantize;
    this.info = asset.info || {};
    this.tokenizer = new CharTokenizer(asset.chars);
    var w = {}, name, tensors = asset.tensors;
    for (name in tensors) {
      if (!/(c_attn|c_proj|c_fc)\.weight$/.test(name)) { w[name] = decodeTensor(tensors[name]); }
    }
    function matrix(name) { return decodeMatrix(tensors[name]); }   // the weights `linear` reads
    this.wte = w["wte.weight"];                       // (V, C) float32, for the embedding lookup
    this.lm_head = matrix("wte.weight");              // the same (V, C) weights, as the LM head
    this.wpe = w["wpe.weight"] || null;               // (block_size, C) for learned positions
    this.posTable = cfg.pos_encoding === "sinusoidal" ? sinusoidalTable(cfg.block_size, cfg.n_embd) : null;
    this.rope = cfg.pos_encoding === "rope" ? ropeCosSin(cfg.block_size, cfg.n_embd / cfg.n_head, 10000.0) : null;
    this.blocks = [];
    for (var l = 0; l < cfg.n_layer; l++) {
      var pre = "blocks." + l + ".";
      this.blocks.push({
        ln_1_w: w[pre + "ln_1.weight"], ln_1_b: w[pre + "ln_1.bias"] || null,
        c_attn_w: matrix(pre + "attn.c_attn.weight"), c_attn_b: w[pre + "attn.c_attn.bias"] || null,
        attn_proj_w: matrix(pre + "attn.c_proj.weight"), attn_proj_b: w[pre + "attn.c_proj.bias"] || null,
        ln_2_w: w[pre + "ln_2.weight"], ln_2_b: w[pre + "ln_2.bias"] || null,
        c_fc_w: matrix(pre + "mlp.c_fc.weight"), c_fc_b: w[pre + "mlp.c_fc.bias"] || null,
        c_proj_w: matrix(pre + "mlp.c_proj.weight"), c_proj_b: w[pre + "mlp.c_proj.bias"] || null
      });
    }
    this.ln_f_w = w["ln_f.weight"];
    this.ln_f_b = w["ln_f.bias"] || null;
    // Work buffers for up to block_size rows, allocated once and reused by every forward
    // pass (one pass runs at a time): generating a token allocates only its logits.
    var P = cfg.block_size, C = cfg.n_embd, D = C / cfg.n_head, width = C + 2 * cfg.n_kv_head * D;
    this.scratch = {
      x: new Float32Array(P * C), h: new Float32Array(P * C), qkv: new Float32Array(P * width),
      y: new Float32Array(P * C), out: new Float32Array(P * C), hidden: new Float32Array(P * 4 * C),
      scores: new Float64Array(P)
    };
  }

  Model.prototype.newCaches = function () {
    var cfg = this.config, D = cfg.n_embd / cfg.n_head, caches = [];
    for (var l = 0; l < cfg.n_layer; l++) { caches.push(new KVCache(cfg.n_kv_head, cfg.block_size, D)); }
    return caches;
  };

  // ids (T,) new tokens -> final hidden states (T, C) before ln_f; the caches hold earlier
  // positions. With weights = [] it also collects every layer's (H, T, S) attention; with
  // residuals = [] a copy of the residual stream (T, C) after the embedding and after each
  // block (n_layer + 1 arrays). The result lives in the model's scratch buffer: read it
  // before the next call. weightsOnly: the last block stops at its attention weights (for
  // attentionMaps; the hidden states returned are then not the model's).
  Model.prototype.hidden = function (ids, caches, weights, residuals, weightsOnly) {
    var cfg = this.config, C = cfg.n_embd, T = ids.length, start = caches[0].length;
    if (T === 0) { throw new Error("no tokens: give at least one character"); }
    if (start + T > cfg.block_size) {
      throw new Error("sequence of " + (start + T) + " tokens exceeds block_size=" + cfg.block_size +
                      "; crop the input to its last " + cfg.block_size + " tokens");
    }
    var x = this.scratch.x, t, i;
    for (t = 0; t < T; t++) {
      var tok = ids[t] * C, pos = (start + t) * C;
      for (i = 0; i < C; i++) {
        var p = this.wpe ? this.wpe[pos + i] : this.posTable ? this.posTable[pos + i] : 0;
        x[t * C + i] = this.wte[tok + i] + p;
      }
    }
    if (residuals) { residuals.push(x.slice(0, T * C)); }
    for (var l = 0; l < cfg.n_layer; l++) {
      var layerWeights = null;
      if (weights) {
        layerWeights = [];
        for (var h = 0; h < cfg.n_head; h++) { layerWeights.push(new Float32Array(T * (start + T))); }
        weights.push(layerWeights);
      }
      block(x, T, cfg, this.blocks[l], caches[l], this.rope, layerWeights, this.scratch,
            weightsOnly && l === cfg.n_layer - 1);
      if (residuals) { residuals.push(x.slice(0, T * C)); }
    }
    return x;
  };

  // Hidden rows (T, C) -> logits (T, V) through ln_f and the tied head. The logits are a new
  // array (the generator keeps every step's logits to show its distribution).
  Model.prototype.head = function (x, T) {
    var C = this.config.n_embd, V = this.config.vocab_size;
    var normed = layerNorm(x, T, C, this.ln_f_w, this.ln_f_b, this.scratch.h);
    return linear(normed, T, C, this.lm_head, null, V, new Float32Array(T * V));
  };

  // forward(idx) without targets: logits (T, V) for every position, like model(idx)[0][0].
  Model.prototype.forward = function (ids) {
    return this.head(this.hidden(ids, this.newCaches()), ids.length);
  };

  // Attention weights of every layer and head, like MiniGPT.attention_maps(idx)[:, 0]:
  // maps[layer][head] is a (T, T) Float32Array, row = query, column = key. Only what the
  // maps need is computed: the last block stops at its weights, and no head runs. (The
  // explorer keeps its maps across edits with a LiveMaps.)
  Model.prototype.attentionMaps = function (ids) {
    var weights = [];
    this.hidden(ids, this.newCaches(), weights, null, true);
    return weights;
  };

  // Logits (V,) for the token after the last of `ids` (only the last row goes through the head).
  Model.prototype.nextLogits = function (ids, caches) {
    var C = this.config.n_embd, x = this.hidden(ids, caches);
    return this.head(x.subarray((ids.length - 1) * C), 1);
  };

  // What each layer predicts (the "logit lens"): ln_f and the tied head applied to the
  // residual stream after the embedding and after every block, as if the model stopped
  // there. Returns n_layer + 1 arrays of logits (T, V); the last one is forward(ids).
  // The twin of minigpt.viz.layer_logits.
  Model.prototype.layerLogits = function (ids) {
    var residuals = [], self = this, T = ids.length;
    this.hidden(ids, this.newCaches(), null, residuals);
    return residuals.map(function (x) { return self.head(x, T); });
  };

  // A prompt kept ready to decode from: its KV caches and next-token logits, updated as the
  // reader edits it. update(ids) reuses every cached position the new prompt shares with the
  // old one (typing at the end costs one token), so Generate starts from finished work.
  function Prefill(model) {
    this.model = model;
    this.ids = [];
    this.caches = model.newCaches();
    this.logits = null;
  }
  Prefill.prototype.update = function (ids) {
    var shared = 0, old = this.ids;
    while (shared < old.length && shared < ids.length && old[shared] === ids[shared]) { shared++; }
    if (shared === ids.length && shared === old.length && this.logits) { return 0; }
    shared = Math.min(shared, ids.length - 1);      // the last token's row gives the logits
    this.caches.forEach(function (cache) { cache.length = shared; });   // rows past it are stale
    this.logits = this.model.nextLogits(ids.slice(shared), this.caches);
    this.ids = ids.slice();
    return ids.length - shared;                     // how many positions were computed
  };
  Prefill.prototype.matches = function (ids) {
    if (!this.logits || ids.length !== this.ids.length) { return false; }
    for (var i = 0; i < ids.length; i++) { if (ids[i] !== this.ids[i]) { return false; } }
    return true;
  };
  MG.Prefill = Prefill;

  // The attention explorer's maps for a text being edited, kept up to date like a Prefill:
  // a causal model's row i depends on characters 0..i only, so the rows of the positions the
  // new text shares with the old one are kept (with the keys in the caches) and only the
  // positions after them run through the model. Typing at the end costs one position; a new
  // text costs a whole attentionMaps pass. update(ids) returns maps[layer][head] (T, T): new
  // arrays each time (the old ones stay as they were).
  function LiveMaps(model) {
    this.model = model;
    this.ids = [];
    this.maps = null;
    this.caches = model.newCaches();
    this.computed = 0;                              // positions run by the last update
  }
  LiveMaps.prototype.update = function (ids) {
    var shared = 0, old = this.ids, T = ids.length, oldT = old.length;
    while (shared < oldT && shared < T && old[shared] === ids[shared]) { shared++; }
    if (shared === T && T === oldT && this.maps) { this.computed = 0; return this.maps; }
    shared = Math.min(shared, T - 1);               // at least one position runs (hidden needs one)
    this.caches.forEach(function (cache) { cache.length = shared; });
    var fresh = [];                                 // [layer][head]: rows shared .. T - 1, (T - shared, T)
    this.model.hidden(ids.slice(shared), this.caches, fresh, null, true);
    var previous = this.maps;
    this.maps = fresh.map(function (heads, l) {
      return heads.map(function (rows, h) {
        var map = new Float32Array(T * T);
        for (var i = 0; i < shared; i++) {         // row i's keys 0..i, from the old map
          map.set(previous[l][h].subarray(i * oldT, i * oldT + i + 1), i * T);
        }
        map.set(rows, shared * T);
        return map;
      });
    });
    this.ids = ids.slice();
    this.computed = T - shared;
    return this.maps;
  };
  MG.LiveMaps = LiveMaps;

  // [block:generate] -------------------------------------------------------------------
  // A generator that yields one token per call of .step(), as MiniGPT.generate does:
  // prefill the prompt into the KV caches, then feed one new token per step. Past
  // block_size the window slides and every step recomputes it (cached keys would be stale),
  // exactly as the Python does. `choose(logits)` returns the next id (greedy, or a sampler
  // from sampling.js).
  // With `prefill` (a Prefill whose ids are promptIds) the first step reuses its caches
  // (copied, so the prefill stays ready for the next run) and its logits: no prompt pass.
  Model.prototype.generator = function (promptIds, choose, prefill) {
    var self = this, ids = promptIds.slice(), caches = null, blockSize = this.config.block_size;
    if (ids.length === 0) { throw new Error("the prompt is empty: give at least one character"); }
    var ready = prefill && prefill.matches(ids) && ids.length <= blockSize ? prefill : null;
    return {
      ids: ids,
      step: function () {
        var logits;
        if (ids.length <= blockSize) {
          if (caches === null && ready) {
            caches = ready.caches.map(function (cache) { return cache.clone(); });
            logits = ready.logits;
          } else if (caches === null) { caches = self.newCaches(); logits = self.nextLogits(ids, caches); }
          else { logits = self.nextLogits(ids.slice(-1), caches); }
        } else {
          logits = self.nextLogits(ids.slice(-blockSize), self.newCaches());
        }
        var id = choose(logits);
        ids.push(id);
        return {id: id, logits: logits};
      }
    };
  };

  MG.argmax = function (values) {                   // first index of the largest value, like torch
    var best = 0;
    for (var i = 1; i < values.length; i++) { if (values[i] > values[best]) { best = i; } }
    return best;
  };

  // Greedy decoding, like model.generate(idx, n, temperature=0): returns the new ids.
  Model.prototype.greedy = function (promptIds, maxNewTokens) {
    var gen = this.generator(promptIds, MG.argmax), out = [];
    for (var i = 0; i < maxNewTokens; i++) { out.push(gen.step().id); }
    return out;
  };

  MG.Model = Model;
  MG.sinusoidalTable = sinusoidalTable;           // for the tests: the tables against positions.py
  MG.ropeCosSin = ropeCosSin;
  MG.erf = erf;
  MG.gelu = gelu;
  MG.geluTanh = geluTanh;
  MG.layerNorm = layerNorm;

  // Asset loading. An asset is a .js file that registers itself in MINIGPT_WEB_MODELS, so it
  // loads with a <script> tag (which works from file://, where fetch() does not). Several
  // widgets on one page share one download and one decoded model.
  var models = {}, waiting = {}, failed = {};      // failed[src]: the error a finished load ended in
  MG.loadModel = function (name) {
    if (!models[name]) {
      var registry = root.MINIGPT_WEB_MODELS || {};
      if (!registry[name]) { throw new Error("model asset " + name + " is not loaded"); }
      models[name] = new Model(registry[name]);
    }
    return models[name];
  };
  // whenModel(src, name, callback(err, model)): add <script src> once, call back when ready.
  MG.whenModel = function (src, name, callback) {
    var registry = root.MINIGPT_WEB_MODELS || {};
    if (failed[src]) { callback(failed[src], null); return; }   // a widget mounted after the failure
    if (registry[name]) {
      var model = null;
      try { model = MG.loadModel(name); } catch (e) { callback(e, null); return; }
      callback(null, model);
      return;
    }
    if (waiting[src]) { waiting[src].push(callback); return; }
    waiting[src] = [callback];
    var script = root.document.createElement("script");
    script.src = src;
    // each callback on its own: one widget that fails to mount must not starve the others
    function answer(error, result) {
      if (error) { failed[src] = error; }
      waiting[src].forEach(function (cb) {
        try { cb(error, result); } catch (e) { if (root.console) { root.console.error(e); } }
      });
    }
    script.onload = function () {
      var result = null, error = null;
      try { result = MG.loadModel(name); } catch (e) { error = e; }
      answer(error, result);
    };
    script.onerror = function () {
      var error = new Error("could not load the model file " + src);
      error.src = src;                              // for the widgets' message in the page's language
      answer(error, null);
    };
    root.document.head.appendChild(script);
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
