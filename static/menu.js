// menu.js: a small accessible drop-down menu (button + role="menu").

// setupMenu wires a toggle button to its menu: click or Enter opens it, arrows move,
// Escape and outside clicks close it. Returns { open, close }.
export function setupMenu(button, menu) {
  const items = () => [...menu.querySelectorAll('[role="menuitem"]')].filter((el) => !el.hidden && !el.disabled);

  function open() {
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    const first = items()[0];
    if (first) first.focus();
  }

  function close(refocus) {
    if (menu.hidden) return;
    menu.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (refocus) button.focus();
  }

  button.addEventListener('click', (e) => {
    e.stopPropagation();
    if (menu.hidden) open();
    else close(false);
  });
  menu.addEventListener('keydown', (e) => {
    const list = items();
    const i = list.indexOf(document.activeElement);
    if (e.key === 'Escape') {
      e.preventDefault();
      close(true);
    } else if (e.key === 'ArrowDown') {
      e.preventDefault();
      list[(i + 1) % list.length].focus();
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      list[(i - 1 + list.length) % list.length].focus();
    } else if (e.key === 'Tab') {
      close(false);
    }
  });
  document.addEventListener('click', (e) => {
    if (!menu.contains(e.target) && !button.contains(e.target)) close(false);
  });
  return { open, close: () => close(false) };
}
