/* Shared plumbing for the book's widgets: find their <div>s, load the model once, mount.
 *
 * A widget is a <div class="mg-widget" data-mg-widget="generator" data-mg-config="{json}">
 * written by minigpt.web.widgets. Its text, shown until the script replaces it, says what
 * it needs, so a page without JavaScript (or a notebook that is not trusted) stays honest.
 */
(function (root) {
  "use strict";
  var MG = root.MiniGPTWeb = root.MiniGPTWeb || {};
  MG.widgets = MG.widgets || {};

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

  // A one-line description of the model for the widget's header.
  MG.describeModel = function (model) {
    var info = model.info || {}, parts = [info.description || ("model " + model.name)];
    if (typeof info.val_loss === "number") {
      parts.push("validation loss " + info.val_loss.toFixed(4) + " nats/char");
    }
    if (typeof info.val_loss_quantized === "number") {
      parts.push("this " + model.quantize + " copy " + info.val_loss_quantized.toFixed(4));
    }
    return parts.join("; ");
  };

  MG.mountAll = function () {
    var nodes = root.document.querySelectorAll(".mg-widget:not([data-mg-mounted])");
    Array.prototype.forEach.call(nodes, function (node) {
      var kind = node.getAttribute("data-mg-widget"), mount = MG.widgets[kind];
      if (!mount) { return; }                         // its script has not loaded (yet)
      node.setAttribute("data-mg-mounted", "loading");
      var config = JSON.parse(node.getAttribute("data-mg-config"));
      var status = node.querySelector(".mg-fallback");
      if (status) { status.textContent = "Loading the model into this page…"; }
      MG.whenModel(config.src, config.model, function (error, model) {
        if (error) {
          node.setAttribute("data-mg-mounted", "failed");
          if (status) { status.textContent = "This widget could not load its model (" + error.message + ")."; }
          return;
        }
        node.textContent = "";
        mount(node, model, config);
        node.setAttribute("data-mg-mounted", "ready");
      });
    });
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
