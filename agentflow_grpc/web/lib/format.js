// How numbers, token usage and times are shown.

export function formatMs(ms) {
  return ms === null || ms === undefined || Number.isNaN(Number(ms)) ? '' : `${Number(Number(ms).toFixed(1))} ms`;
}

export function formatSeconds(ms) {
  return `${(Number(ms) / 1000).toFixed(2)} s`;
}

export function usageTitle(usage) {
  return `prompt ${Number(usage.prompt_tokens ?? 0)} · completion ${Number(usage.completion_tokens ?? 0)}`;
}

export function formatTokens(usage) {
  return usage ? `${Number(usage.total_tokens ?? 0)} tokens` : '';
}

export function relativeTime(iso) {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return '';
  const seconds = (time - Date.now()) / 1000;
  const units = [['year', 31_536_000], ['month', 2_592_000], ['day', 86_400], ['hour', 3_600], ['minute', 60]];
  const format = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return 'just now';
}

export function fullTime(iso) {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? '' : new Date(time).toLocaleString();
}

export function clockTime(iso) {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return '';
  return new Date(time).toLocaleTimeString([], {
    hour12: false, hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3,
  });
}
