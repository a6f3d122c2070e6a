/* The few lines a widget's notebook output runs inline (minigpt.web.widgets copies this file
 * into a <script> after the widget's <div>): load the widget styles and scripts, or, inside Jupyter,
 * say where the live view is instead.
 *
 * In the rendered book the scripts sit beside the page (../minigpt-web/). A Jupyter front end
 * (JupyterLab, Notebook, VS Code, Colab) does not serve those files: asking for
 * /lab/minigpt-web/model.js there returns Lab's own HTML page. So inside an output area
 * nothing is requested and the widget shows its Jupyter text, which names the kernel-side
 * explorer of the chapter.
 */
(function (root) {
  "use strict";
  var doc = root.document;
  var OUTPUT_AREAS = ".jp-OutputArea-output, .jp-RenderedHTMLCommon, .output_subarea, .output_area, " +
                     "[data-mime-type='text/html'], .cell-output-ipywidget-background";
  function inJupyter(node) {
    var host = root.location.hostname || "", protocol = root.location.protocol || "";
    return Boolean(node.closest && node.closest(OUTPUT_AREAS)) || /colab|googleusercontent/.test(host) ||
           protocol.indexOf("vscode") === 0;
  }
  var loaded = root.MINIGPT_WEB_SCRIPTS = root.MINIGPT_WEB_SCRIPTS || {};
  Array.prototype.forEach.call(doc.querySelectorAll(".mg-widget:not([data-mg-loader])"), function (node) {
    node.setAttribute("data-mg-loader", "1");
    if (inJupyter(node)) {
      node.setAttribute("data-mg-mounted", "jupyter");
      var fallback = node.querySelector(".mg-fallback");
      if (fallback) { fallback.textContent = node.getAttribute("data-mg-jupyter"); }
      return;
    }
    var base = node.getAttribute("data-mg-base");
    if (!loaded[base + "widgets.css"]) {              // the styles too: Jupyter would answer with HTML
      loaded[base + "widgets.css"] = true;
      var link = doc.createElement("link");
      link.rel = "stylesheet";
      link.href = base + "widgets.css";
      doc.head.appendChild(link);
    }
    var scripts;
    try {
      scripts = JSON.parse(node.getAttribute("data-mg-scripts"));
    } catch (e) {                                     // a hand-edited page: this widget stays as its
      if (root.console) { root.console.error(e); }    // no-script text, the others still load
      return;
    }
    scripts.forEach(function (name) {
      var src = base + name;
      if (loaded[src]) { return; }
      loaded[src] = true;
      var script = doc.createElement("script");
      script.src = src;
      script.async = false;                           // run in the order given: model.js first
      doc.head.appendChild(script);
    });
    if (root.MiniGPTWeb && root.MiniGPTWeb.mountAll) { root.MiniGPTWeb.mountAll(); }
  });
})(window);
