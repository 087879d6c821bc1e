/* Width check for tools/export_submission.py, run in headless Chromium before it prints the page.

   print.css lays the screen out like the printed page (188 mm = 710 CSS px wide). Once MathJax has typeset and
   the fonts have loaded, this records every display equation and table that runs past the page's right edge,
   and every code block with a line that print.css would wrap (measured unwrapped, white-space: pre), with the
   id of the notebook cell it belongs to, as JSON in a <script> element with the id below; Chromium's --dump-dom
   hands it to the exporter. */
(function () {
  "use strict";
  var MARK_ID = "asgn3-width-check";
  var SLACK_PX = 0.5;  // sub-pixel rounding

  function cellId(element) {
    var cell = element.closest(".jp-Cell");
    var id = cell ? cell.id : "";
    return id.indexOf("cell-id=") === 0 ? id.slice("cell-id=".length) : null;
  }

  function contentBox(element) {  // left and right of the box its children fill: the element less its padding
    var box = element.getBoundingClientRect(), style = getComputedStyle(element);
    var left = box.left + element.clientLeft + parseFloat(style.paddingLeft);
    return {left: left, right: left + element.clientWidth - parseFloat(style.paddingLeft)
                               - parseFloat(style.paddingRight)};
  }

  function measure() {
    var page = document.body.getBoundingClientRect();
    var wide = [], checked = {};
    function record(kind, element, width, room) {
      checked[kind] = (checked[kind] || 0) + 1;
      if (width > room + SLACK_PX) {
        wide.push({kind: kind, cell: cellId(element), width: Math.ceil(width), room: Math.floor(room)});
      }
    }
    // Display equations and tables do not wrap: they are too wide when they run past the page's right edge from
    // where their box starts (past their box but within the page, say into a markdown cell's padding, is printed).
    document.querySelectorAll(".MJXc-display, .MathJax_Display, mjx-container[display]").forEach(function (box) {
      var math = box.querySelector(".MathJax_CHTML, .MathJax, mjx-math") || box;
      var left = Math.min(contentBox(box).left, math.getBoundingClientRect().left);
      record("equation", box, math.getBoundingClientRect().width, page.right - left);
    });
    document.querySelectorAll("table").forEach(function (table) {
      if (!table.parentElement || table.parentElement.closest("table")) return;  // nested: its outer table counts
      var left = Math.min(contentBox(table.parentElement).left, table.getBoundingClientRect().left);
      record("table", table, table.getBoundingClientRect().width, page.right - left);
    });
    // Code wraps at its block's edge (print.css): the widest line, unwrapped, against the block's content box.
    // Cell inputs and code blocks in markdown count, not the plain text of outputs (.jp-RenderedText).
    var unwrapped = document.createElement("style");
    unwrapped.textContent = "pre, pre * { white-space: pre !important; }";
    document.head.appendChild(unwrapped);
    document.querySelectorAll("pre").forEach(function (pre) {
      if (pre.closest(".jp-RenderedText")) return;
      var text = document.createRange();
      text.selectNodeContents(pre);
      var room = contentBox(pre);
      record(pre.closest(".jp-InputArea-editor") ? "code" : "code block", pre, text.getBoundingClientRect().width,
             room.right - room.left);
    });
    unwrapped.remove();
    var mark = document.createElement("script");
    mark.type = "application/json";
    mark.id = MARK_ID;
    mark.textContent = JSON.stringify({page: Math.floor(page.width), checked: checked, wide: wide});
    document.body.appendChild(mark);
  }

  function afterFonts() {
    (document.fonts ? document.fonts.ready : Promise.resolve()).then(measure);
  }

  window.addEventListener("load", function () {
    if (window.MathJax && window.MathJax.Hub && window.MathJax.Hub.Queue) {
      window.MathJax.Hub.Queue(afterFonts);  // after the Typeset call the template queued
    } else {
      afterFonts();  // no MathJax (an offline test page): nothing to wait for
    }
  });
})();
