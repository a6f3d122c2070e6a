/* Chapter 9's static sampling explorer (minigpt.viz.sampling_explorer_html): sliders over one
 * stored next-token distribution. minigpt.viz inlines this file into the notebook output, with
 * __UID__ and __DATA__ replaced by the element id and the JSON payload, after sampling.js,
 * whose filterProbs re-applies temperature, top-k and top-p as next_token_probs does.
 */
(function () {
  var root = document.getElementById(__UID__), data = __DATA__;
  if (!root) { return; }
  var V = data.logits.length;
  function q(name) { return root.querySelector('[data-mg="' + name + '"]'); }
  function fmt(x) { return (100 * x).toFixed(1) + "%"; }
  function nearest(T, k, p) {
    var best = null, bestD = Infinity;
    data.samples.forEach(function (s) {
      var d = Math.abs(s.temperature - T) / 2 + Math.abs(s.top_k - k) / V + Math.abs(s.top_p - p);
      if (d < bestD) { bestD = d; best = s; }
    });
    return best;
  }
  function redraw() {
    var T = parseFloat(q("T").value), k = parseInt(q("k").value, 10), p = parseFloat(q("p").value);
    q("Tv").textContent = T === 0 ? "0 (greedy)" : T.toFixed(2);
    q("kv").textContent = k >= V ? "off (" + V + ")" : String(k);
    q("pv").textContent = p >= 1 ? "off (1.00)" : p.toFixed(2);
    var probs = MiniGPTWeb.filterProbs(data.logits, T, k, p), shown = 0, kept = 0;
    data.show.forEach(function (j, r) {
      q("bar" + r).style.width = (100 * probs[j]).toFixed(2) + "%";
      q("pct" + r).textContent = fmt(probs[j]);
      shown += probs[j];
    });
    probs.forEach(function (x) { if (x > 0) { kept += 1; } });
    q("rest").textContent = fmt(Math.max(0, 1 - shown));
    q("kept").textContent = String(kept);
    var s = nearest(T, k, p);
    if (s) { q("slabel").textContent = s.label; q("stext").textContent = s.text; }
  }
  ["T", "k", "p"].forEach(function (n) { q(n).addEventListener("input", redraw); });
  redraw();
})();
