// A small JSON reader, enough to read tool results without a dependency.
// Numbers keep their text; parse answers null for anything that is not one
// JSON value.

export const NULL: i32 = 0;
export const BOOL: i32 = 1;
export const NUMBER: i32 = 2;
export const STRING: i32 = 3;
export const ARRAY: i32 = 4;
export const OBJECT: i32 = 5;

// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH = 128;

export class Value {
  kind: i32 = NULL;
  // The text of a number, the value of a string, "true" or "false".
  text: string = "";
  items: Value[] = [];
  keys: string[] = [];

  // get is the member key of an object (the first, if repeated).
  get(key: string): Value | null {
    if (this.kind != OBJECT) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }

  // str is the member key's string, or null.
  str(key: string): string | null {
    const v = this.get(key);
    return v !== null && v.kind == STRING ? v.text : null;
  }

  // num is the member key's number as f64, or NaN.
  num(key: string): f64 {
    const v = this.get(key);
    return v !== null && v.kind == NUMBER ? parseFloat(v.text) : NaN;
  }
}

class Parser {
  i: i32 = 0;
  failed: bool = false;
  constructor(public s: string) {}

  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.i++;
    }
  }

  peek(): i32 {
    return this.i < this.s.length ? this.s.charCodeAt(this.i) : -1;
  }

  fail(): Value {
    this.failed = true;
    return new Value();
  }

  value(depth: i32): Value {
    if (depth > MAX_DEPTH) return this.fail();
    this.ws();
    const c = this.peek();
    const v = new Value();
    if (c == 0x22) {
      v.kind = STRING;
      v.text = this.string();
    } else if (c == 0x7b || c == 0x5b) {
      const object = c == 0x7b;
      const close = object ? 0x7d : 0x5d;
      v.kind = object ? OBJECT : ARRAY;
      this.i++;
      this.ws();
      if (this.peek() == close) {
        this.i++;
        return v;
      }
      while (!this.failed) {
        if (object) {
          this.ws();
          if (this.peek() != 0x22) return this.fail();
          v.keys.push(this.string());
          this.ws();
          if (this.peek() != 0x3a) return this.fail();
          this.i++;
        }
        v.items.push(this.value(depth + 1));
        this.ws();
        const d = this.peek();
        this.i++;
        if (d == close) return v;
        if (d != 0x2c) return this.fail();
      }
    } else if (this.s.startsWith("true", this.i)) {
      v.kind = BOOL;
      v.text = "true";
      this.i += 4;
    } else if (this.s.startsWith("false", this.i)) {
      v.kind = BOOL;
      v.text = "false";
      this.i += 5;
    } else if (this.s.startsWith("null", this.i)) {
      this.i += 4;
    } else {
      v.kind = NUMBER;
      v.text = this.number();
    }
    return v;
  }

  digits(): i32 {
    const start = this.i;
    while (this.peek() >= 0x30 && this.peek() <= 0x39) this.i++;
    return this.i - start;
  }

  number(): string {
    const start = this.i;
    if (this.peek() == 0x2d) this.i++;
    if (this.peek() == 0x30) this.i++;
    else if (this.digits() == 0) {
      this.failed = true;
      return "";
    }
    if (this.peek() == 0x2e) {
      this.i++;
      if (this.digits() == 0) this.failed = true;
    }
    if (this.peek() == 0x65 || this.peek() == 0x45) {
      this.i++;
      if (this.peek() == 0x2b || this.peek() == 0x2d) this.i++;
      if (this.digits() == 0) this.failed = true;
    }
    return this.s.substring(start, this.i);
  }

  string(): string {
    this.i++; // the opening quote
    let out = "";
    let from = this.i;
    while (true) {
      const c = this.peek();
      if (c < 0 || c < 0x20) {
        this.failed = true;
        return "";
      }
      if (c == 0x22) break;
      if (c != 0x5c) {
        this.i++;
        continue;
      }
      out += this.s.substring(from, this.i);
      const e = this.i + 1 < this.s.length ? this.s.charCodeAt(this.i + 1) : -1;
      this.i += 2;
      if (e == 0x22) out += "\"";
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75 && this.i + 4 <= this.s.length) {
        const h = parseInt(this.s.substring(this.i, this.i + 4), 16);
        if (isNaN(h)) {
          this.failed = true;
          return "";
        }
        // UTF-16 code units: a surrogate pair decodes to its two halves.
        out += String.fromCharCode(<i32>h);
        this.i += 4;
      } else {
        this.failed = true;
        return "";
      }
      from = this.i;
    }
    out += this.s.substring(from, this.i);
    this.i++; // the closing quote
    return out;
  }
}

// parse reads one JSON text, or answers null.
export function parse(s: string): Value | null {
  const p = new Parser(s);
  const v = p.value(0);
  p.ws();
  if (p.failed || p.i != s.length) return null;
  return v;
}

// valid reports whether s is one JSON text.
export function valid(s: string): bool {
  return parse(s) !== null;
}
