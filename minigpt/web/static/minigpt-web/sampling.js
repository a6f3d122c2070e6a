/* Decoding rules in the browser: the twin of minigpt/sampling.py, plus a seeded RNG.
 *
 * filterProbs(logits (V,), temperature, topK, topP) -> probabilities (V,), with the same
 * steps in the same order as minigpt.next_token_probs: temperature, then top-k (exactly k
 * tokens, ties broken by the lower id), then top-p (drop a token when the better tokens
 * before it already hold >= p; the best token always stays). Temperature 0 is greedy.
 * The tests run it against next_token_probs on many logits and settings.
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};

  // The settings and logits next_token_probs refuses are refused here too, with its words:
  // broken logits would otherwise come out as NaN probabilities and a silent draw of id 0.
  function checkSettings(temperature, topK, topP) {
    if (typeof temperature !== "number" || !isFinite(temperature) || temperature < 0) {
      throw new Error("temperature must be a number >= 0 (0 = greedy), got " + temperature + ".");
    }
    if (topK !== null && topK !== undefined && !(Number.isInteger(topK) && topK >= 1)) {
      throw new Error("top_k must be a positive integer or None, got " + topK + ".");
    }
    if (topP !== null && topP !== undefined && !(typeof topP === "number" && topP > 0 && topP <= 1)) {
      throw new Error("top_p must be in (0, 1] or None, got " + topP + ".");
    }
  }

  function checkLogits(logits) {
    var usable = false;
    for (var i = 0; i < logits.length; i++) {
      if (isNaN(logits[i]) || logits[i] === Infinity) {
        throw new Error("the logits hold " + (isNaN(logits[i]) ? "NaN" : "+inf") + ", so no probabilities " +
                        "can be made from them: the model's weights or its input are broken.");
      }
      if (logits[i] !== -Infinity) { usable = true; }
    }
    if (!usable) {
      throw new Error("every logit of a row is -inf (every token masked): no token can be drawn; " +
                      "leave at least one token unmasked.");
    }
  }

  // greedy: temperature 0, or one that is 0 in float32 (where Python divides), as is_greedy
  function isGreedy(temperature) { return Math.fround(temperature) === 0; }

  function filterProbs(logits, temperature, topK, topP) {
    checkSettings(temperature, topK, topP);
    checkLogits(logits);
    var V = logits.length, order = [], probs = new Array(V), i;
    for (i = 0; i < V; i++) { order.push(i); probs[i] = 0; }
    order.sort(function (a, b) { return (logits[b] - logits[a]) || (a - b); });   // best first
    if (isGreedy(temperature)) { probs[order[0]] = 1; return probs; }
    var k = topK === null || topK === undefined ? V : Math.min(topK, V);
    var p = topP === null || topP === undefined ? 1 : topP;
    var kept = order.slice(0, k);                                                  // top-k
    // shifted by the best logit before dividing: a tiny temperature then gives 0 and -inf,
    // all mass on the best tokens (Python's shifted path), instead of inf - inf = NaN
    var best = logits[kept[0]], total = 0;
    kept.forEach(function (j) { probs[j] = Math.exp((logits[j] - best) / temperature); total += probs[j]; });
    kept.forEach(function (j) { probs[j] /= total; });                             // softmax over kept
    if (p < 1) {                                                                   // top-p
      // The walk is done in float32 as torch does it, so that ties landing exactly on p
      // (uniform logits: 6 of 10 tokens hold 0.6) are decided alike: cumsum adds float32
      // probabilities in float64 and rounds each running total to float32; the mass before a
      // token is that total minus the token, in float32, compared with p as float32.
      var sum64 = 0, mass = 0, p32 = Math.fround(p);
      kept.forEach(function (j, rank) {
        var pj = Math.fround(probs[j]);
        sum64 += pj;
        var massBefore = Math.fround(Math.fround(sum64) - pj);
        if (rank > 0 && massBefore >= p32) { probs[j] = 0; } else { mass += probs[j]; }
      });
      kept.forEach(function (j) { probs[j] /= mass; });
    }
    return probs;
  }

  // mulberry32: a small, fast 32-bit generator. Seeded, so a seed in the page reproduces a
  // sample exactly (it is not PyTorch's generator: the same seed gives different text there).
  function Rng(seed) {
    var state = seed >>> 0;
    this.seed = state;
    this.next = function () {                      // uniform in [0, 1)
      state = (state + 0x6D2B79F5) >>> 0;
      var t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // Draw an id from probs (V,) with one uniform number u: walk the cumulative sum in id
  // order. Tokens with probability 0 can never be drawn.
  function sampleIndex(probs, u) {
    var cumulative = 0, last = 0;
    for (var i = 0; i < probs.length; i++) {
      if (probs[i] > 0) {
        cumulative += probs[i];
        last = i;
        if (u < cumulative) { return i; }
      }
    }
    return last;                                    // u within rounding of 1
  }

  // A chooser for Model.generator: filter the logits with the settings, then draw.
  // Remembers the distribution of every step so the page can show it afterwards.
  function sampler(settings, rng) {
    var history = [];
    var choose = function (logits) {
      var probs = filterProbs(logits, settings.temperature, settings.topK, settings.topP);
      var id = isGreedy(settings.temperature) ? probs.indexOf(1) : sampleIndex(probs, rng.next());
      history.push({logits: Array.prototype.slice.call(logits), probs: probs, id: id});
      return id;
    };
    choose.history = history;
    return choose;
  }

  MG.filterProbs = filterProbs;
  MG.Rng = Rng;
  MG.sampleIndex = sampleIndex;
  MG.sampler = sampler;
})(typeof globalThis !== "undefined" ? globalThis : this);
