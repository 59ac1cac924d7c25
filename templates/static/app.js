// Progressive enhancement only: the page works without this file.
// "Select all" ticks every record checkbox of the table it sits in.
document.addEventListener('change', (event) => {
  const box = event.target
  if (!(box instanceof HTMLInputElement) || !box.classList.contains('select-all')) return
  const table = box.closest('table')
  for (const item of table.querySelectorAll('tbody input[type="checkbox"][name="date"]')) item.checked = box.checked
})
