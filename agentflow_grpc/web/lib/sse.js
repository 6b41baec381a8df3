// Server-sent events read from a fetch body (EventSource cannot send the API key header).

/** Server-sent events: messages end at a blank line; `data:` lines are joined by newlines. */
export class SseParser {
  #buffer = '';
  #heldCR = false;

  /** Feeds decoded text; returns the data of every complete message. */
  push(text, final = false) {
    let chunk = (this.#heldCR ? '\r' : '') + text;
    this.#heldCR = !final && chunk.endsWith('\r'); // `\r` + `\n` may straddle two chunks
    if (this.#heldCR) chunk = chunk.slice(0, -1);
    this.#buffer += chunk.replace(/\r\n?/g, '\n');
    const messages = [];
    let end;
    while ((end = this.#buffer.indexOf('\n\n')) >= 0) {
      messages.push(this.#buffer.slice(0, end));
      this.#buffer = this.#buffer.slice(end + 2);
    }
    if (final && this.#buffer.trim()) messages.push(this.#buffer); // a last message without its blank line
    if (final) this.#buffer = '';
    return messages.map(SseParser.dataOf).filter((data) => data !== null);
  }

  static dataOf(block) {
    const lines = block.split('\n').filter((line) => line === 'data' || line.startsWith('data:'));
    if (!lines.length) return null; // comments, keep-alives, `event:`/`id:` only
    return lines.map((line) => line.slice(5).replace(/^ /, '')).join('\n');
  }
}

/** Reads the response's body to its end, calling `onData` with each message's data. */
export async function readEventStream(response, onData) {
  if (!response.body) throw new Error('the response has no body');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
    for (const data of parser.push(text, done)) onData(data);
    if (done) return;
  }
}
