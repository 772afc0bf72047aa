// The strategy template form (alert_manager/strategy_template_form.html): add and remove sequences and
// exposure rows, and offer in each row the filters of the detector it names. Field names hold the
// sequence and row numbers (s<S>-p<P>-...); they only need to be unique, the page order is the template's.
(() => {
  const form = document.getElementById("strategy-template-form");
  if (!form) return;
  const filters = JSON.parse(document.getElementById("equipment-filters").textContent);
  let counter = 1000;
  for (const element of form.querySelectorAll("[name]")) {
    for (const number of (element.name.match(/\d+/g) || [])) counter = Math.max(counter, Number(number) + 1);
  }
  const fromTemplate = (id, replacements) => {
    let html = document.getElementById(id).innerHTML;
    for (const [key, value] of Object.entries(replacements)) html = html.replaceAll(key, String(value));
    const holder = document.createElement(id === "plan-template" ? "tbody" : "div");
    holder.innerHTML = html.trim();
    return holder.firstElementChild;
  };
  const fillFilters = (row) => {
    const detector = row.querySelector(".detector-select").value;
    const select = row.querySelector(".filter-select");
    const current = select.value || select.dataset.value;
    const names = filters[detector] || [];
    select.innerHTML = "";
    for (const name of names) select.add(new Option(name, name, false, name === current));
    if (current && !names.includes(current)) {
      select.add(new Option(current + " (not on this detector)", current, false, true));
    }
  };
  const addRow = (sequence) => {
    const row = fromTemplate("plan-template", {"__S__": sequence.dataset.index, "__P__": counter++});
    sequence.querySelector(".plans").append(row);
    fillFilters(row);
    return row;
  };
  document.getElementById("add-sequence").addEventListener("click", () => {
    const sequence = fromTemplate("sequence-template", {"__S__": counter++, "__P__": counter++});
    document.getElementById("sequences").append(sequence);
    sequence.querySelectorAll(".plan-row").forEach(fillFilters);
    sequence.querySelector("input").focus();
  });
  form.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("remove-row")) {
      button.closest(button.dataset.remove).remove();
    } else if (button.classList.contains("add-row")) {
      addRow(button.closest(".strategy-sequence")).querySelector("select").focus();
    }
  });
  form.addEventListener("change", (event) => {
    if (event.target.classList.contains("detector-select")) fillFilters(event.target.closest(".plan-row"));
  });
})();
