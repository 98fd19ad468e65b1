// emoji.js: a small picker of common emoji that inserts Unicode at the caret.

// EMOJI lists [character, name] pairs; the name is the button's accessible label.
export const EMOJI = [
  ['😀', 'grinning face'], ['😂', 'face with tears of joy'], ['🙂', 'slightly smiling face'],
  ['😊', 'smiling face with smiling eyes'], ['😉', 'winking face'], ['😍', 'smiling face with heart-eyes'],
  ['😘', 'face blowing a kiss'], ['😎', 'smiling face with sunglasses'], ['🤔', 'thinking face'],
  ['😮', 'face with open mouth'], ['😢', 'crying face'], ['😭', 'loudly crying face'],
  ['😅', 'grinning face with sweat'], ['😴', 'sleeping face'], ['😡', 'pouting face'],
  ['🙃', 'upside-down face'], ['🤗', 'hugging face'], ['🥳', 'partying face'],
  ['😬', 'grimacing face'], ['🤯', 'exploding head'], ['👍', 'thumbs up'],
  ['👎', 'thumbs down'], ['👏', 'clapping hands'], ['🙏', 'folded hands'],
  ['👋', 'waving hand'], ['💪', 'flexed biceps'], ['👌', 'OK hand'],
  ['✌️', 'victory hand'], ['❤️', 'red heart'], ['💔', 'broken heart'],
  ['🔥', 'fire'], ['✨', 'sparkles'], ['🎉', 'party popper'],
  ['⭐', 'star'], ['✅', 'check mark'], ['❌', 'cross mark'],
  ['☕', 'hot beverage'], ['🍕', 'pizza'], ['🍺', 'beer mug'],
  ['🎂', 'birthday cake'], ['🌞', 'sun with face'], ['🌧️', 'cloud with rain'],
  ['🚀', 'rocket'], ['💡', 'light bulb'], ['📎', 'paperclip'],
  ['👀', 'eyes'], ['💯', 'hundred points'], ['🤝', 'handshake'],
];

// insertAtCursor puts text into a textarea or input at its selection and keeps focus.
export function insertAtCursor(field, text) {
  field.focus();
  const start = field.selectionStart ?? field.value.length;
  const end = field.selectionEnd ?? field.value.length;
  field.setRangeText(text, start, end, 'end');
  field.dispatchEvent(new Event('input', { bubbles: true }));
}

// setupEmojiPicker wires the toggle button, the popover and the target field.
export function setupEmojiPicker(button, popover, field) {
  const grid = document.createElement('div');
  grid.className = 'emoji-grid';
  for (const [ch, name] of EMOJI) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'emoji-choice';
    b.textContent = ch;
    b.setAttribute('aria-label', name);
    b.title = name;
    b.addEventListener('click', () => {
      insertAtCursor(field, ch);
    });
    grid.append(b);
  }
  popover.replaceChildren(grid);

  const open = () => {
    popover.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    const first = popover.querySelector('button');
    if (first) first.focus();
  };
  const close = (refocus) => {
    if (popover.hidden) return;
    popover.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (refocus) field.focus();
  };

  button.addEventListener('click', (e) => {
    e.stopPropagation();
    if (popover.hidden) open();
    else close(true);
  });
  popover.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      close(true);
      return;
    }
    // Arrow keys move through the grid.
    const items = [...popover.querySelectorAll('button')];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    const cols = 8;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
    if (e.key in moves) {
      e.preventDefault();
      const j = Math.min(items.length - 1, Math.max(0, i + moves[e.key]));
      items[j].focus();
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !popover.hidden) close(true);
  });
  document.addEventListener('click', (e) => {
    if (!popover.contains(e.target) && e.target !== button) close(false);
  });
  return { close };
}
