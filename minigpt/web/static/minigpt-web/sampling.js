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

  function filterProbs(logits, temperature, topK, topP) {
    var V = logits.length, order = [], probs = new Array(V), i;
    for (i = 0; i < V; i++) { order.push(i); probs[i] = 0; }
    order.sort(function (a, b) { return (logits[b] - logits[a]) || (a - b); });   // best first
    if (temperature === 0) { probs[order[0]] = 1; return probs; }                  // greedy
    var k = topK === null || topK === undefined ? V : Math.min(topK, V);
    var p = topP === null || topP === undefined ? 1 : topP;
    var kept = order.slice(0, k);                                                  // top-k
    var top = logits[kept[0]] / temperature, total = 0;
    kept.forEach(function (j) { probs[j] = Math.exp(logits[j] / temperature - top); total += probs[j]; });
    kept.forEach(function (j) { probs[j] /= total; });                             // softmax over kept
    if (p < 1) {                                                                   // top-p
      var before = 0, mass = 0;
      kept.forEach(function (j, rank) {
        var pj = probs[j];
        if (rank > 0 && before >= p) { probs[j] = 0; } else { mass += pj; }
        before += pj;
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
      var id = settings.temperature === 0 ? probs.indexOf(1) : sampleIndex(probs, rng.next());
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
