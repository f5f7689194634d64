// Campaign editor: the merge-field picker inserts "{field}" at the caret of the script, and
// picking a saved segment copies its query into the query box. Both fire "input" so htmx
// refreshes the live preview and the audience count.
(function () {
  "use strict";

  function fire(el) {
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("click", function (event) {
    var chip = event.target.closest("[data-insert]");
    if (!chip) return;
    var script = document.getElementById("script");
    if (!script || script.disabled) return;
    var text = chip.getAttribute("data-insert");
    var start = script.selectionStart, end = script.selectionEnd;
    script.value = script.value.slice(0, start) + text + script.value.slice(end);
    script.focus();
    script.selectionStart = script.selectionEnd = start + text.length;
    fire(script);
  });

  document.addEventListener("change", function (event) {
    if (event.target.id !== "segment-picker") return;
    var option = event.target.selectedOptions[0];
    var query = document.getElementById("segment-query");
    if (!option || !option.value || !query) return;
    query.value = option.getAttribute("data-query") || "";
    fire(query);
    var script = document.getElementById("script");
    if (script) fire(script);
  });
})();
