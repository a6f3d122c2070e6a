/* Shared plumbing for the book's widgets: find their <div>s, load the model once, mount;
 * and the widgets' language.
 *
 * A widget is a <div class="mg-widget" data-mg-widget="generator" data-mg-config="{json}">
 * written by minigpt.web.widgets. Its text, shown until the script replaces it, says what
 * it needs, so a page without JavaScript (or a notebook that is not trusted) stays honest.
 *
 * Language: the widgets speak Chinese on a page whose <html lang> starts with "zh" (the
 * Chinese edition is built with language = "zh_CN", so its pages say lang="zh-CN"), English
 * everywhere else. Like minigpt.tr in the kernel, every message is written in English in the
 * code and looked up by its English text in a small table, ZH, one per file (this one holds
 * the shared messages); `{name}` fields are filled in after the lookup, so one entry covers
 * every value. A message missing from its table is shown in English, never lost
 * (tests/test_web.py checks that every message has its entry). Model output, prompts and
 * Shakespeare's text are never translated.
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};
  MG.widgets = MG.widgets || {};

  // The page's language: "zh" when <html lang> starts with "zh", else "en".
  MG.language = function () {
    var lang = root.document && root.document.documentElement ? root.document.documentElement.lang : "";
    return /^zh/i.test(lang || "") ? "zh" : "en";
  };
  // MG.tr(table, "kept {n} of {V} tokens", {n: 3, V: 65}): the message in the page's language
  // (table: {english: chinese}), with its {fields} filled in.
  MG.tr = function (table, english, fields) {
    var text = MG.language() === "zh" && Object.prototype.hasOwnProperty.call(table, english) ? table[english] : english;
    return fields ? text.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(fields, name) ? String(fields[name]) : all;
    }) : text;
  };

  var ZH = {
    "Loading the model into this page…": "正在把模型载入本页……",
    "This widget could not load its model ({error}).": "这个小部件没能载入它的模型（{error}）。",
    "This widget could not start ({error}).": "这个小部件没能启动（{error}）。",
    "could not load the model file {src}": "无法载入模型文件 {src}",
    "model {name}": "模型 {name}",
    "minigpt's shipped model 'shakespeare_char' (tinyshakespeare, 4,821,248 parameters)":
      "minigpt 随包附带的模型 'shakespeare_char'（在 tinyshakespeare 上训练，4,821,248 个参数）",
    "validation loss {loss} nats/char": "验证集损失 {loss} 奈特/字符",
    "this {quantize} copy {loss}": "本页的 {quantize} 副本 {loss}",
    "Model: {description}": "模型：{description}",
    "character {character} ({code}) at position {position} is not in this model's {n}-character vocabulary: it knows only the {n} characters of tinyshakespeare (English letters, punctuation, space and newline). Remove or replace it.":
      "位置 {position} 上的字符 {character}（{code}）不在这个模型的词表里：它只认识 tinyshakespeare 里的 {n} 个字符（英文字母、标点、空格和换行），中文和其他文字都不在其中。请删除或替换这个字符。",
    "character {character} ({code}) at position {position} is not in this model's {n}-character vocabulary. Remove or replace it.":
      "位置 {position} 上的字符 {character}（{code}）不在这个模型的 {n} 个字符的词表里。请删除或替换这个字符。"
  };
  function tr(english, fields) { return MG.tr(ZH, english, fields); }

  // el("div", {class: "x", text: "hi"}, [children]): a tiny DOM builder.
  MG.el = function (tag, attrs, children) {
    var node = root.document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; }
      else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  };

  // How a character is shown as a label: the invisible ones get a visible stand-in.
  MG.showChar = function (ch) {
    return {"\n": "↵", " ": "␣", "\t": "⇥"}[ch] || ch;
  };

  // A one-line description of the model for the widget's header ("Model: ...").
  MG.describeModel = function (model) {
    var info = model.info || {};
    var parts = [info.description ? tr(info.description) : tr("model {name}", {name: model.name})];
    if (typeof info.val_loss === "number") {
      parts.push(tr("validation loss {loss} nats/char", {loss: info.val_loss.toFixed(4)}));
    }
    if (typeof info.val_loss_quantized === "number") {
      parts.push(tr("this {quantize} copy {loss}", {quantize: model.quantize, loss: info.val_loss_quantized.toFixed(4)}));
    }
    return tr("Model: {description}", {description: parts.join(MG.language() === "zh" ? "；" : "; ")});
  };

  // The message for a character the model does not know (an error from tokenizer.encode, with
  // .position and .character), `offset` added to its position (the part of a prompt that was
  // cut). It names the vocabulary: a reader typing Chinese learns why it cannot work.
  MG.unknownCharacter = function (error, model, offset) {
    var ch = error.character, code = ch.codePointAt(0).toString(16).toUpperCase();
    while (code.length < 4) { code = "0" + code; }
    var fields = {character: JSON.stringify(ch), code: "U+" + code, position: error.position + (offset || 0),
                  n: model.tokenizer.vocabSize};
    return /tinyshakespeare/.test((model.info || {}).description || "")
      ? tr("character {character} ({code}) at position {position} is not in this model's {n}-character vocabulary: " +
          "it knows only the {n} characters of tinyshakespeare (English letters, punctuation, space and newline). " +
          "Remove or replace it.", fields)
      : tr("character {character} ({code}) at position {position} is not in this model's {n}-character vocabulary. " +
          "Remove or replace it.", fields);
  };

  // A widget that cannot start says why in place of itself (and in the console): it is emptied
  // first, so no half-built controls sit above the message, and the widgets after it still mount.
  function cannotStart(node, e) {
    node.setAttribute("data-mg-mounted", "failed");
    node.textContent = "";
    node.appendChild(MG.el("div", {"class": "mg-fallback", role: "status",
                                   text: tr("This widget could not start ({error}).", {error: e.message})}));
    if (root.console) { root.console.error(e); }
  }

  MG.mountAll = function () {
    var nodes = root.document.querySelectorAll(".mg-widget:not([data-mg-mounted])");
    Array.prototype.forEach.call(nodes, function (node) {
      var kind = node.getAttribute("data-mg-widget"), mount = MG.widgets[kind];
      if (!mount) { return; }                         // its script has not loaded (yet)
      node.setAttribute("data-mg-mounted", "loading");
      var config;
      try {
        config = JSON.parse(node.getAttribute("data-mg-config"));   // a hand-edited page may break it
      } catch (e) {
        cannotStart(node, e);
        return;
      }
      var status = node.querySelector(".mg-fallback");
      if (status) { status.textContent = tr("Loading the model into this page…"); }
      MG.whenModel(config.src, config.model, function (error, model) {
        if (error) {
          node.setAttribute("data-mg-mounted", "failed");
          var why = error.src ? tr("could not load the model file {src}", {src: error.src}) : error.message;
          if (status) { status.textContent = tr("This widget could not load its model ({error}).", {error: why}); }
          return;
        }
        node.textContent = "";
        try {
          mount(node, model, config);
        } catch (e) {                                  // this widget says why; the others still mount
          cannotStart(node, e);
          return;
        }
        node.setAttribute("data-mg-mounted", "ready");
      });
    });
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
