/* The in-page model's decode speed in node: several versions of model.js, one process.
 *
 *   node bench/web_node_speed.js [--tokens 200] [--repeats 5] [--explorer] [model.js ...]
 *
 * Without file arguments it times minigpt/web/static/minigpt-web/model.js. With several
 * (e.g. the committed one, written out by `git show HEAD~1:minigpt/web/static/minigpt-web/model.js
 * > /tmp/old_model.js`, and the working copy) it loads each with the same shipped asset and
 * alternates between them repeat by repeat, so that a change in the
 * machine's load hits every version alike. For each it prints the median of:
 *   * prefill: the prompt through the model (ms), the same work as the page's first token;
 *   * decode: greedy tokens/s after the first token, with the KV cache (the page's steady state),
 *     per second of wall time and per second of this process's CPU time (what an idle core
 *     would give; on a busy machine the wall-time rate drops with the share of CPU it gets).
 * It also checks that every version produces the same greedy tokens.
 * --explorer also times attentionMaps (the attention explorer's pass) over 128 characters of
 * tinyshakespeare, a different passage each repeat, alternating versions the same way, and
 * checks that every version gives the same maps, number for number.
 * node is not Chromium (same V8 engine, no page around it): bench/web_speed.py measures the page.
 */
"use strict";
var fs = require("fs");
var path = require("path");
var vm = require("vm");
var os = require("os");

var STATIC = path.join(__dirname, "..", "minigpt", "web", "static", "minigpt-web");
var PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou ";

function parseArgs(argv) {
  var args = {tokens: 200, repeats: 5, explorer: false, files: []};
  for (var i = 0; i < argv.length; i++) {
    if (argv[i] === "--tokens") { args.tokens = parseInt(argv[++i], 10); }
    else if (argv[i] === "--explorer") { args.explorer = true; }
    else if (argv[i] === "--repeats") { args.repeats = parseInt(argv[++i], 10); }
    else { args.files.push(argv[i]); }
  }
  if (args.files.length === 0) { args.files.push(path.join(STATIC, "model.js")); }
  return args;
}

function median(values) {
  var sorted = values.slice().sort(function (a, b) { return a - b; });
  return sorted[Math.floor(sorted.length / 2)];
}

// Each version runs in this process's own global context (a vm context would route every
// global lookup, Math.exp included, through slow interceptors): load it, take the
// MiniGPTWeb it defines, and remove the global before the next version defines its own.
function loadVersion(file) {
  delete globalThis.MiniGPTWeb;
  vm.runInThisContext(fs.readFileSync(file, "utf8"), {filename: file});
  var MG = globalThis.MiniGPTWeb;
  delete globalThis.MiniGPTWeb;
  var started = process.hrtime.bigint();
  var model = MG.loadModel("shakespeare_char");
  return {file: file, model: model, decodeMs: Number(process.hrtime.bigint() - started) / 1e6,
          prefill: [], rates: [], cpuRates: [], tokens: null, maps: [], mapsOut: null};
}

// One run: prefill (the first token) timed apart from the decode steps that follow.
function timeRun(version, nTokens) {
  var model = version.model, argmax = function (logits) {
    var best = 0;
    for (var i = 1; i < logits.length; i++) { if (logits[i] > logits[best]) { best = i; } }
    return best;
  };
  var gen = model.generator(model.tokenizer.encode(PROMPT), argmax);
  var t0 = process.hrtime.bigint();
  gen.step();
  var t1 = process.hrtime.bigint(), cpu = process.cpuUsage();
  for (var i = 1; i < nTokens; i++) { gen.step(); }
  var t2 = process.hrtime.bigint();
  cpu = process.cpuUsage(cpu);
  version.prefill.push(Number(t1 - t0) / 1e6);
  version.rates.push((nTokens - 1) / (Number(t2 - t1) / 1e9));
  version.cpuRates.push((nTokens - 1) / ((cpu.user + cpu.system) / 1e6));
  return gen.ids.slice(-nTokens);
}

// One explorer pass: attentionMaps over `text` (128 characters), in ms; keeps the maps.
function timeMaps(version, text) {
  var ids = version.model.tokenizer.encode(text), t0 = process.hrtime.bigint();
  version.mapsOut = version.model.attentionMaps(ids);
  version.maps.push(Number(process.hrtime.bigint() - t0) / 1e6);
}

function sameMaps(a, b) {
  for (var l = 0; l < a.length; l++) {
    for (var h = 0; h < a[l].length; h++) {
      for (var i = 0; i < a[l][h].length; i++) { if (a[l][h][i] !== b[l][h][i]) { return false; } }
    }
  }
  return true;
}

function main() {
  var args = parseArgs(process.argv.slice(2));
  vm.runInThisContext(fs.readFileSync(path.join(STATIC, "shakespeare_char.js"), "utf8"));  // the asset
  var versions = args.files.map(loadVersion);
  versions.forEach(function (v) { timeRun(v, 20); v.prefill = []; v.rates = []; v.cpuRates = []; });   // warm up the JIT
  for (var r = 0; r < args.repeats; r++) {
    versions.forEach(function (v) { v.tokens = timeRun(v, args.tokens); });
  }
  if (args.explorer) {
    var corpus = fs.readFileSync(path.join(__dirname, "..", "minigpt", "data", "tinyshakespeare.txt"), "utf8");
    versions.forEach(function (v) { timeMaps(v, corpus.slice(0, 128)); v.maps = []; });    // warm up
    for (r = 0; r < args.repeats; r++) {
      versions.forEach(function (v) { timeMaps(v, corpus.slice(1000 * (r + 1), 1000 * (r + 1) + 128)); });
    }
  }
  console.log("node " + process.version + ", " + os.cpus().length + " CPUs, load average " +
              os.loadavg().map(function (x) { return x.toFixed(2); }).join(" ") + "; " + args.tokens +
              " greedy tokens after a " + PROMPT.length + "-character prompt, median of " + args.repeats);
  versions.forEach(function (v) {
    console.log("  " + v.file + ": asset decoded in " + v.decodeMs.toFixed(0) + " ms, prefill " +
                median(v.prefill).toFixed(1) + " ms, decode " + median(v.rates).toFixed(1) + " tokens/s (runs: " +
                v.rates.map(function (x) { return x.toFixed(0); }).join(", ") + "), " +
                median(v.cpuRates).toFixed(1) + " tokens per CPU-second" +
                (args.explorer ? "; explorer, 128 characters: attentionMaps " + median(v.maps).toFixed(1) +
                 " ms (runs: " + v.maps.map(function (x) { return x.toFixed(0); }).join(", ") + ")" : ""));
  });
  var reference = versions[0].tokens.join(",");
  versions.forEach(function (v) {
    if (v.tokens.join(",") !== reference) {
      console.log("  DIFFERENT greedy tokens from " + versions[0].file + ": " + v.file);
      process.exitCode = 1;
    }
    if (args.explorer && !sameMaps(versions[0].mapsOut, v.mapsOut)) {
      console.log("  DIFFERENT attention maps from " + versions[0].file + ": " + v.file);
      process.exitCode = 1;
    }
  });
}

main();
