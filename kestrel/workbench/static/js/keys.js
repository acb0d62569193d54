// The keyboard map, in one place: key -> action name (main.js binds actions). Shown in the footer.
export const KEYMAP = [
  { key: ' ', label: 'space', action: 'togglePlay', help: 'play/pause' },
  { key: 'ArrowLeft', label: '←', action: 'stepBack', help: 'frame' },
  { key: 'ArrowRight', label: '→', action: 'stepForward', help: 'frame' },
  { key: 'ArrowLeft', shift: true, label: '⇧←', action: 'jumpBack', help: '−1 s' },
  { key: 'ArrowRight', shift: true, label: '⇧→', action: 'jumpForward', help: '+1 s' },
  { key: 'j', label: 'j', action: 'nextTrack', help: 'next track' },
  { key: 'k', label: 'k', action: 'prevTrack', help: 'prev track' },
  { key: 'a', label: 'a', action: 'confirm', help: 'confirm' },
  { key: 'r', label: 'r', action: 'reject', help: 'reject' },
  { key: 'l', label: 'l', action: 'cycleLabel', help: 'label' },
  { key: 'h', label: 'h', action: 'hostile', help: 'hostile' },
  { key: 'f', label: 'f', action: 'friend', help: 'friend' },
  { key: 'n', label: 'n', action: 'neutral', help: 'neutral' },
  { key: 'u', label: 'u', action: 'unknown', help: 'unknown' },
  { key: 'z', label: 'z', action: 'undo', help: 'undo' },
];

export function actionFor(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return null;
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  const hit = KEYMAP.find((k) => k.key === key && !!k.shift === (ev.shiftKey && key.startsWith('Arrow')));
  return hit ? hit.action : null;
}

export function renderHelp(el) {
  el.innerHTML = KEYMAP.map((k) => `<span><kbd>${k.label}</kbd>${k.help}</span>`).join('');
}
