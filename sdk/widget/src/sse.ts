// A small server-sent events parser for the query stream, as the HTML
// standard's "event stream interpretation" describes it: lines end in CRLF,
// LF or a lone CR (also when a chunk boundary falls between the CR and the
// LF); `:` starts a comment; one space after the colon is dropped; the `data`
// lines of an event are joined with "\n"; an empty line dispatches the event,
// unless it had no data lines; one byte order mark at the very start is
// dropped. `feed` takes the body's bytes (a UTF-8 character may be split
// across them), `push` decoded text. It keeps no `id` or `retry`: the widget
// never reconnects (a query is not resumable).

/** One dispatched event: its `event` field ("message" when none) and its data. */
export interface SseEvent {
  event: string;
  data: string;
}

export class SseParser {
  private buffer = "";
  /** The last text ended in CR: a LF at the start of the next belongs to it. */
  private afterCR = false;
  private type = "";
  private data: string[] = [];
  private started = false;
  // The BOM is left in for `push` to drop (exactly one, as the standard says).
  private decoder = new TextDecoder("utf-8", { ignoreBOM: true });

  /** Feeds the next bytes of the body, or none at its end; returns the events they completed. */
  feed(bytes?: Uint8Array): SseEvent[] {
    return this.push(bytes ? this.decoder.decode(bytes, { stream: true }) : this.decoder.decode());
  }

  /** Feeds decoded text; returns the events it completed, in order. */
  push(text: string): SseEvent[] {
    if (text === "") return [];
    if (!this.started) {
      this.started = true;
      if (text.startsWith("\uFEFF")) text = text.slice(1);
    }
    if (this.afterCR && text.startsWith("\n")) text = text.slice(1);
    // A CR right at the end may be the first half of a CRLF split across chunks.
    this.afterCR = text.endsWith("\r");
    const lines = (this.buffer + text).split(/\r\n|\r|\n/);
    // The last piece has no line end yet.
    this.buffer = lines.pop() ?? "";
    const events: SseEvent[] = [];
    for (const line of lines) {
      if (line === "") {
        if (this.data.length > 0) events.push({ event: this.type || "message", data: this.data.join("\n") });
        this.type = "";
        this.data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.type = value;
      else if (field === "data") this.data.push(value);
    }
    return events;
  }
}
