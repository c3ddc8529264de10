// Sortable tables: click (or press Enter on) a column header to sort by it; again to reverse.
// Cells carry their sort key in data-sort; numeric columns (th.num) compare as numbers; blanks go last.
function sortTable(table, k, th) {
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("thead th").forEach((h) => h.setAttribute("aria-sort", "none"));
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const numeric = th.classList.contains("num");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = a.cells[k].dataset.sort, y = b.cells[k].dataset.sort;
    if (x === "" || y === "") return (x === "") - (y === "");
    const c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y, undefined, { numeric: true });
    return ascending ? c : -c;
  });
  body.append(...rows);
}
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((th, k) => {
    th.querySelector("button").addEventListener("click", () => sortTable(table, k, th));
  });
});
