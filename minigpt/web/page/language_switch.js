// The language switch: a link at the top of every page of the book to the same page in the
// other edition. The English book is _build/html/, the Chinese one _build/html/zh/, and both
// have the same pages under the same paths (tools/zh_edition.py makes zh/ mirror the English
// sources), so the twin of <root>/notebooks/09_decoding.html is <root>/zh/notebooks/09_decoding.html.
// No request is made: the link is computed from the page's own address.
(function () {
  "use strict";

  // Pages that exist in one edition only, and the page their switch links to instead.
  const ONLY_IN_ZH = { "book/glossary.html": "book/notation.html" };

  function twinAddress() {
    const html = document.documentElement;
    const chinese = (html.lang || "").toLowerCase().startsWith("zh");
    // Sphinx writes the path from this page to its book's root, e.g. "../" for notebooks/*.html.
    const root = new URL(html.dataset.content_root || "./", window.location.href);
    const here = new URL(window.location.href);
    here.hash = "";
    here.search = "";
    let page = here.href.startsWith(root.href) ? here.href.slice(root.href.length) : "index.html";
    if (page === "" || page.endsWith("/")) page += "index.html";
    if (chinese) {
      page = ONLY_IN_ZH[page] || page;
      return { href: new URL("../" + page, root).href, label: "English", lang: "en", title: "Read this page in English" };
    }
    return { href: new URL("zh/" + page, root).href, label: "中文", lang: "zh-CN", title: "阅读本页的中文版" };
  }

  function addSwitch() {
    if (document.querySelector(".minigpt-language-switch")) return;
    const twin = twinAddress();
    const link = document.createElement("a");
    link.className = "minigpt-language-switch btn btn-sm";
    link.href = twin.href;
    link.hreflang = twin.lang;
    link.lang = twin.lang;
    link.title = twin.title;
    link.textContent = twin.label;
    // The theme's row of header buttons (download, full screen, ...) when the page has one;
    // otherwise the top of the article, so the switch is always visible.
    const buttons = document.querySelector(".article-header-buttons");
    if (buttons) {
      buttons.prepend(link);
    } else {
      const article = document.querySelector("main") || document.body;
      article.prepend(link);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", addSwitch);
  } else {
    addSwitch();
  }
})();
