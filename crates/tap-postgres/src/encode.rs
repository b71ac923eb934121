//! Column values: PostgreSQL's text output → JSON, the one encoding every
//! replication method uses (FULL_TABLE and INCREMENTAL read COPY text,
//! LOG_BASED reads wal2json's text of the same output functions), so the same
//! value always gives the same JSON.
//!
//! The connection's session settings fix the text forms this module reads:
//! `DateStyle=ISO`, `TimeZone=UTC`, `IntervalStyle=postgres`,
//! `extra_float_digits=3`, `bytea_output=hex` (see [`SESSION_SETTINGS`]).
//!
//! | kind | text | JSON |
//! |---|---|---|
//! | integers | `42` | `42` |
//! | numeric | `12.50` | `12.50` (exact digits) |
//! | float | `1.5`, `1e+20`, `-0` | `1.5`, `1e+20`, `-0.0` |
//! | NaN, ±Infinity | `NaN` | per [`SpecialNumbers`](crate::values::SpecialNumbers) |
//! | boolean | `t` | `true` |
//! | json, jsonb | `{"a": 1}` | embedded; from a JSON `null` on, JSON text in strings (`"null"`) |
//! | hstore | `"a"=>"1"` | `{"a":"1"}` |
//! | bytea | `\x00ff` | `"00ff"` (hex) or `"AP8="` (base64) |
//! | date | `2024-02-29` | `"2024-02-29"` |
//! | timestamp | `2024-02-29 10:11:12.5` | `"2024-02-29T10:11:12.5+00:00"` (offset per option) |
//! | timestamptz | `2024-02-29 10:11:12.5+00` | `"2024-02-29T10:11:12.5+00:00"` |
//! | time | `24:00:00` | `"24:00:00"` |
//! | timetz | `10:11:12.345+03` | `"10:11:12.345+03:00"` |
//! | out of RFC 3339 (year > 9999, BC, ±infinity) | `infinity` | per [`OutOfRange`](crate::values::OutOfRange) |
//! | arrays | `{{1,2},{3,NULL}}` | `[[1,2],[3,null]]` |
//! | everything else | text output | JSON string |
//!
//! Invariant: an encoder writes exactly one JSON value into `out`, or
//! returns an error and writes nothing usable (the caller discards the row).
//!
//! Narrow schemas, widened on demand: a column's schema starts narrow (what
//! every common target and validator takes natively). A value the narrow
//! schema cannot describe — NaN/±Infinity under `special_numbers: string`,
//! a date outside RFC 3339 under `out_of_range_dates: string`, a
//! multi-dimensional array, a json value that is the JSON literal `null`
//! — sets a [`Widen`] flag on its column's [`Encoder`]; the stream's SCHEMA
//! is written again, widened, before the record holding it (see
//! `rows::StreamPlan::widen_schema`). So every record matches the last
//! SCHEMA, other targets see an honest schema change, and a PostgreSQL
//! target keeps the column type from `x-sql-datatype` and loads the value
//! exactly. A float/date/time text goes through one function per type
//! ([`write_float`], [`special_number`], [`out_of_range`],
//! [`encode_timestamp`], [`write_time`], [`write_json`]) so any reader
//! (text COPY, wal2json, binary) formats it the same way.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use base64::Engine as _;

use crate::types::Kind;
use crate::values::{ByteaEncoding, Policy, ValueOptions, Widen};

/// Session settings under which the text forms above hold. Run on every
/// connection the tap reads values through.
pub const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

/// A value the policy refuses, or text that is not what the type's output
/// function writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// What is wrong, with the value.
    pub message: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

fn err<T>(message: String) -> Result<T, ValueError> {
    Err(ValueError { message })
}

/// Counts of values a `null` policy replaced, for the end-of-stream report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// NaN/±Infinity written as null.
    pub special_numbers: u64,
    /// Out-of-range dates written as null.
    pub out_of_range: u64,
    /// json/jsonb array elements that are the JSON literal `null`: written
    /// as `null`, which a reader cannot tell from SQL NULL. (A json column's
    /// own values switch to JSON text instead, [`Widen::JSON_TEXT`].)
    pub json_null: u64,
}

/// Encodes the values of one column, and remembers what its values needed
/// beyond the narrow schema ([`Widen`]) and what the last SCHEMA sent
/// announced.
#[derive(Debug)]
pub struct Encoder {
    kind: Kind,
    opts: ValueOptions,
    /// [`Widen`] flags the values so far needed (atomics: encoders are
    /// shared by reference across awaits; relaxed order, one thread writes).
    seen: AtomicU8,
    /// [`Widen`] flags of the last SCHEMA written for the stream.
    announced: AtomicU8,
}

impl Clone for Encoder {
    fn clone(&self) -> Encoder {
        Encoder {
            kind: self.kind.clone(),
            opts: self.opts,
            seen: AtomicU8::new(self.seen.load(Relaxed)),
            announced: AtomicU8::new(self.announced.load(Relaxed)),
        }
    }
}

impl Encoder {
    /// An encoder for `kind` under `opts`.
    pub fn new(kind: Kind, opts: ValueOptions) -> Encoder {
        Encoder {
            kind,
            opts,
            seen: AtomicU8::new(0),
            announced: AtomicU8::new(0),
        }
    }

    /// What the values so far needed beyond the narrow schema.
    pub fn widened(&self) -> Widen {
        Widen::from_bits(self.seen.load(Relaxed))
    }

    /// Whether a value needed more than the last SCHEMA announced (then a
    /// widened SCHEMA must precede the record).
    pub fn needs_announcement(&self) -> bool {
        let seen = self.seen.load(Relaxed);
        seen & !self.announced.load(Relaxed) != 0
    }

    /// Records that a SCHEMA built from [`Encoder::widened`] was written.
    pub fn announce(&self) {
        self.announced.store(self.seen.load(Relaxed), Relaxed);
    }

    /// The column's kind.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The value policies it applies.
    pub fn options(&self) -> &ValueOptions {
        &self.opts
    }

    /// Whether every value is written as the JSON string of its text, as
    /// it is (`write_str`): text, uuid and types the tap does not know.
    pub fn writes_text_as_string(&self) -> bool {
        matches!(self.kind, Kind::Text { .. } | Kind::Uuid | Kind::Other)
    }

    /// Appends the JSON form of `text` (the type's text output) to `out`.
    pub fn encode(
        &self,
        text: &str,
        out: &mut Vec<u8>,
        replaced: &mut Replaced,
    ) -> Result<(), ValueError> {
        let mut widen = self.widened();
        let before = widen;
        encode_kind(&self.kind, &self.opts, text, out, replaced, &mut widen)?;
        if widen != before {
            self.seen.fetch_or(widen.bits(), Relaxed);
        }
        Ok(())
    }
}

/// Encodes one value. `widen` holds, on entry, what the column's values
/// needed so far (a JSON_TEXT column writes JSON text); a value that needs
/// more adds its flag.
fn encode_kind(
    kind: &Kind,
    opts: &ValueOptions,
    text: &str,
    out: &mut Vec<u8>,
    replaced: &mut Replaced,
    widen: &mut Widen,
) -> Result<(), ValueError> {
    match kind {
        Kind::Int { .. } => {
            if text.is_empty()
                || !text
                    .bytes()
                    .enumerate()
                    .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'))
            {
                return err(format!("{text:?} is not an integer"));
            }
            out.extend_from_slice(text.as_bytes());
        }
        Kind::Numeric | Kind::Float => {
            if matches!(text, "NaN" | "Infinity" | "-Infinity") {
                return special_number(opts, text, out, replaced, widen);
            }
            if !is_json_number(text) {
                return err(format!("{text:?} is not a number"));
            }
            if opts.decimal_as_string && *kind == Kind::Numeric {
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            } else if *kind == Kind::Float {
                write_float(text, out);
            } else {
                out.extend_from_slice(text.as_bytes());
            }
        }
        Kind::Bool => match text {
            "t" | "true" => out.extend_from_slice(b"true"),
            "f" | "false" => out.extend_from_slice(b"false"),
            _ => return err(format!("{text:?} is not a boolean")),
        },
        Kind::Json => write_json(text, out, widen),
        Kind::Hstore => encode_hstore(text, out)?,
        Kind::Bytea => {
            let Some(hex) = text.strip_prefix("\\x") else {
                return err(format!("bytea {text:?} is not in hex output form"));
            };
            match opts.bytea {
                ByteaEncoding::Hex => write_str(out, hex),
                ByteaEncoding::Base64 => {
                    let bytes = decode_hex(hex).ok_or_else(|| ValueError {
                        message: format!("bytea {text:?} is not valid hex"),
                    })?;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                    write_str(out, &b64);
                }
            }
        }
        Kind::Date => {
            if is_plain_date(text) {
                write_str(out, text);
            } else {
                out_of_range(opts, text, text, out, replaced, widen)?;
            }
        }
        Kind::Timestamp | Kind::TimestampTz => {
            encode_timestamp(kind, opts, text, out, replaced, widen)?
        }
        Kind::Time | Kind::TimeTz => write_time(kind, text, out),
        Kind::Text { .. } | Kind::Uuid | Kind::Other => write_str(out, text),
        Kind::Array { element, delimiter } => {
            ArrayParser {
                text: text.as_bytes(),
                pos: 0,
                delimiter: *delimiter,
                element,
                opts,
            }
            .encode(out, replaced, widen)?;
        }
    }
    Ok(())
}

/// A float's text output (`extra_float_digits=3`: the shortest exact
/// digits) as JSON. `-0` becomes `-0.0`: most JSON readers but
/// JavaScript's read `-0` as the integer 0 and lose the sign; `-0.0` keeps
/// it everywhere. NaN/±Infinity go through [`special_number`] instead.
pub fn write_float(text: &str, out: &mut Vec<u8>) {
    if text == "-0" {
        out.extend_from_slice(b"-0.0");
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// NaN, Infinity or -Infinity (`text`, PostgreSQL's spelling) of a float
/// or numeric, per `special_numbers`; a string widens the schema.
pub fn special_number(
    opts: &ValueOptions,
    text: &str,
    out: &mut Vec<u8>,
    replaced: &mut Replaced,
    widen: &mut Widen,
) -> Result<(), ValueError> {
    apply(
        opts.special_numbers,
        text,
        out,
        &mut replaced.special_numbers,
        (widen, Widen::SPECIAL_NUMBER),
        || format!("{text} cannot be written as a JSON number (special_numbers: error)"),
    )
}

/// A date or timestamp outside RFC 3339 (`original` as PostgreSQL wrote
/// it, `spelled` as the tap writes it), per `out_of_range_dates`; a string
/// widens the schema (drops its `format`).
pub fn out_of_range(
    opts: &ValueOptions,
    original: &str,
    spelled: &str,
    out: &mut Vec<u8>,
    replaced: &mut Replaced,
    widen: &mut Widen,
) -> Result<(), ValueError> {
    apply(
        opts.out_of_range,
        spelled,
        out,
        &mut replaced.out_of_range,
        (widen, Widen::NO_FORMAT),
        || format!("{original:?} is outside RFC 3339 (out_of_range_dates: error)"),
    )
}

/// A json/jsonb value's text. Embedded as JSON, except in a column that
/// has held the JSON literal `null` (from that value on): there every value
/// is its JSON text in a string (`"null"`, `"{\"a\": 1}"`), so that JSON
/// null and SQL NULL (`null`) stay apart. Whitespace and key order are
/// jsonb's own output, so the text is the value.
pub fn write_json(text: &str, out: &mut Vec<u8>, widen: &mut Widen) {
    if !widen.contains(Widen::JSON_TEXT) && text.trim() == "null" {
        *widen = widen.union(Widen::JSON_TEXT);
    }
    if widen.contains(Widen::JSON_TEXT) {
        write_str(out, text);
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// A time or timetz text output, as PostgreSQL wrote it; timetz's `+HH`
/// becomes `+HH:MM`. (Their schema has no `format: time`: no value can
/// satisfy both RFC 3339's `full-time`, which needs an offset, and
/// singer-check-tap's `%H:%M:%S`, which allows neither offset nor
/// fraction.)
pub fn write_time(kind: &Kind, text: &str, out: &mut Vec<u8>) {
    if *kind == Kind::TimeTz {
        let mut s = String::with_capacity(text.len() + 3);
        s.push_str(text);
        normalize_offset(&mut s, text.rfind(['+', '-']));
        write_str(out, &s);
    } else {
        write_str(out, text);
    }
}

/// Writes `spelled` as a string (adding `flag` to `widen`), or null
/// (counted), or refuses, per `policy`.
fn apply(
    policy: Policy,
    spelled: &str,
    out: &mut Vec<u8>,
    count: &mut u64,
    (widen, flag): (&mut Widen, Widen),
    refusal: impl FnOnce() -> String,
) -> Result<(), ValueError> {
    match policy {
        Policy::String => {
            *widen = widen.union(flag);
            write_str(out, spelled)
        }
        Policy::Null => {
            *count += 1;
            out.extend_from_slice(b"null");
        }
        Policy::Error => return err(refusal()),
    }
    Ok(())
}

/// `YYYY-MM-DD` with a four-digit year, not BC.
fn is_plain_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b[..4].iter().all(u8::is_ascii_digit)
}

/// A timestamp or timestamptz text output (`2024-02-29 10:11:12.5+00`) as
/// RFC 3339 (`2024-02-29T10:11:12.5+00:00`; a `timestamp` gets `+00:00`
/// with `naive_timestamp_offset`); outside RFC 3339 per [`out_of_range`].
pub fn encode_timestamp(
    kind: &Kind,
    opts: &ValueOptions,
    text: &str,
    out: &mut Vec<u8>,
    replaced: &mut Replaced,
    widen: &mut Widen,
) -> Result<(), ValueError> {
    if text == "infinity" || text == "-infinity" {
        return out_of_range(opts, text, text, out, replaced, widen);
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let Some(space) = body.find(' ') else {
        return err(format!("{text:?} is not an ISO timestamp"));
    };
    let mut s = String::with_capacity(text.len() + 6);
    s.push_str(&body[..space]);
    s.push('T');
    s.push_str(&body[space + 1..]);
    if *kind == Kind::TimestampTz {
        // The offset starts at the last sign after the time part.
        let time_start = space + 1;
        let sign = body[time_start..].rfind(['+', '-']).map(|i| i + time_start);
        normalize_offset(&mut s, sign);
    } else if opts.naive_timestamp_offset {
        s.push_str("+00:00");
    }
    if bc {
        s.push_str(" BC");
    }
    if !bc && space == 10 {
        write_str(out, &s);
        Ok(())
    } else {
        out_of_range(opts, text, &s, out, replaced, widen)
    }
}

/// Turns a trailing `+HH` offset (starting at byte `sign`) into `+HH:MM`.
/// `+HH:MM` and `+HH:MM:SS` are kept.
fn normalize_offset(s: &mut String, sign: Option<usize>) {
    if let Some(i) = sign {
        if s.len() - i == 3 {
            s.push_str(":00");
        }
    }
}

/// A JSON number: `-?digits[.digits][e[+-]digits]`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == int_start || (b[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == frac {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp {
            return false;
        }
    }
    i == b.len()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// hstore's text form: `"k"=>"v", "k2"=>NULL` → `{"k":"v","k2":null}`.
fn encode_hstore(text: &str, out: &mut Vec<u8>) -> Result<(), ValueError> {
    let b = text.as_bytes();
    let mut i = 0;
    let bad = || ValueError {
        message: format!("{text:?} is not hstore output"),
    };
    out.push(b'{');
    let mut first = true;
    let mut item = String::new();
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        i = quoted(b, i, &mut item).ok_or_else(bad)?;
        write_str(out, &item);
        out.push(b':');
        if !b[i..].starts_with(b"=>") {
            return Err(bad());
        }
        i += 2;
        if b[i..].starts_with(b"NULL") {
            out.extend_from_slice(b"null");
            i += 4;
        } else {
            i = quoted(b, i, &mut item).ok_or_else(bad)?;
            write_str(out, &item);
        }
    }
    out.push(b'}');
    Ok(())
}

/// Reads a `"…"` string with backslash escapes starting at `i`; returns the
/// index after the closing quote.
fn quoted(b: &[u8], mut i: usize, into: &mut String) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    let mut bytes = Vec::new();
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                bytes.push(b[i + 1]);
                i += 2;
            }
            b'"' => {
                into.clear();
                into.push_str(std::str::from_utf8(&bytes).ok()?);
                return Some(i + 1);
            }
            c => {
                bytes.push(c);
                i += 1;
            }
        }
    }
    None
}

/// Parses an array's text form (`{…}`, optionally after `[1:2]=`
/// dimension bounds) and writes nested JSON arrays.
struct ArrayParser<'a> {
    text: &'a [u8],
    pos: usize,
    delimiter: u8,
    element: &'a Kind,
    opts: &'a ValueOptions,
}

impl ArrayParser<'_> {
    /// One element. A json element that is the JSON literal `null` stays
    /// `null` and is counted: JSON_TEXT applies to json columns, not to
    /// json arrays (rare enough not to turn every element into text).
    fn element_value(
        &self,
        text: &str,
        out: &mut Vec<u8>,
        replaced: &mut Replaced,
        widen: &mut Widen,
    ) -> Result<(), ValueError> {
        if *self.element == Kind::Json {
            if text.trim() == "null" {
                replaced.json_null += 1;
            }
            out.extend_from_slice(text.as_bytes());
            return Ok(());
        }
        encode_kind(self.element, self.opts, text, out, replaced, widen)
    }

    fn bad(&self) -> ValueError {
        ValueError {
            message: format!(
                "{:?} is not array output (at byte {})",
                String::from_utf8_lossy(self.text),
                self.pos
            ),
        }
    }

    fn encode(
        mut self,
        out: &mut Vec<u8>,
        replaced: &mut Replaced,
        widen: &mut Widen,
    ) -> Result<(), ValueError> {
        if self.text.first() == Some(&b'[') {
            // Non-default lower bounds: `[0:1]={…}`. JSON arrays start at 0.
            let eq = self
                .text
                .iter()
                .position(|&c| c == b'=')
                .ok_or_else(|| self.bad())?;
            self.pos = eq + 1;
        }
        self.level(out, replaced, widen, 0)?;
        if self.pos != self.text.len() {
            return Err(self.bad());
        }
        Ok(())
    }

    fn level(
        &mut self,
        out: &mut Vec<u8>,
        replaced: &mut Replaced,
        widen: &mut Widen,
        depth: usize,
    ) -> Result<(), ValueError> {
        if self.text.get(self.pos) != Some(&b'{') {
            return Err(self.bad());
        }
        if depth > 0 {
            *widen = widen.union(Widen::NESTED_ARRAY);
        }
        self.pos += 1;
        out.push(b'[');
        if self.text.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            out.push(b']');
            return Ok(());
        }
        let mut item = String::new();
        loop {
            match self.text.get(self.pos) {
                Some(b'{') => self.level(out, replaced, widen, depth + 1)?,
                Some(b'"') => {
                    self.pos = quoted(self.text, self.pos, &mut item).ok_or_else(|| self.bad())?;
                    self.element_value(&item, out, replaced, widen)?;
                }
                Some(_) => {
                    let start = self.pos;
                    while let Some(&c) = self.text.get(self.pos) {
                        if c == self.delimiter || c == b'}' {
                            break;
                        }
                        self.pos += 1;
                    }
                    let token = std::str::from_utf8(&self.text[start..self.pos])
                        .map_err(|_| self.bad())?
                        .trim();
                    if token.eq_ignore_ascii_case("NULL") {
                        out.extend_from_slice(b"null");
                    } else {
                        self.element_value(token, out, replaced, widen)?;
                    }
                }
                None => return Err(self.bad()),
            }
            match self.text.get(self.pos) {
                Some(&c) if c == self.delimiter => {
                    self.pos += 1;
                    out.push(b',');
                }
                Some(b'}') => {
                    self.pos += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(self.bad()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{OutOfRange, SpecialNumbers};

    fn enc_with(kind: Kind, opts: ValueOptions, text: &str) -> Result<String, ValueError> {
        let mut out = Vec::new();
        let mut r = Replaced::default();
        Encoder::new(kind, opts).encode(text, &mut out, &mut r)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn enc(kind: Kind, text: &str) -> String {
        enc_with(kind, ValueOptions::default(), text).unwrap()
    }

    #[test]
    fn numbers_keep_their_digits() {
        let int = Kind::Int { min: 0, max: 0 };
        assert_eq!(
            enc(int.clone(), "-9223372036854775808"),
            "-9223372036854775808"
        );
        assert!(enc_with(int, ValueOptions::default(), "1.5").is_err());
        assert_eq!(
            enc(Kind::Numeric, "123456789012345678901234567890.123456789"),
            "123456789012345678901234567890.123456789"
        );
        assert_eq!(enc(Kind::Numeric, "1.1000"), "1.1000");
        assert_eq!(enc(Kind::Numeric, "-0.01"), "-0.01");
        assert_eq!(enc(Kind::Float, "1e+20"), "1e+20");
        // -0 keeps its sign in every JSON reader (Python reads `-0` as int 0).
        assert_eq!(enc(Kind::Float, "-0"), "-0.0");
        assert_eq!(enc(Kind::Float, "0"), "0");
        assert_eq!(enc(Kind::Float, "NaN"), "\"NaN\"");
        assert_eq!(enc(Kind::Numeric, "-Infinity"), "\"-Infinity\"");
        let null = ValueOptions {
            special_numbers: SpecialNumbers::Null,
            ..Default::default()
        };
        assert_eq!(enc_with(Kind::Float, null, "Infinity").unwrap(), "null");
        let fail = ValueOptions {
            special_numbers: SpecialNumbers::Error,
            ..Default::default()
        };
        assert!(enc_with(Kind::Numeric, fail, "NaN").is_err());
        let s = ValueOptions {
            decimal_as_string: true,
            ..Default::default()
        };
        assert_eq!(enc_with(Kind::Numeric, s, "12.50").unwrap(), "\"12.50\"");
    }

    #[test]
    fn times() {
        assert_eq!(
            enc(Kind::TimestampTz, "2024-02-29 10:11:12.123456+00"),
            "\"2024-02-29T10:11:12.123456+00:00\""
        );
        assert_eq!(
            enc(Kind::Timestamp, "2024-02-29 10:11:12"),
            "\"2024-02-29T10:11:12+00:00\""
        );
        let naive = ValueOptions {
            naive_timestamp_offset: false,
            ..Default::default()
        };
        assert_eq!(
            enc_with(Kind::Timestamp, naive, "2024-02-29 10:11:12").unwrap(),
            "\"2024-02-29T10:11:12\""
        );
        assert_eq!(enc(Kind::TimestampTz, "infinity"), "\"infinity\"");
        assert_eq!(enc(Kind::Timestamp, "-infinity"), "\"-infinity\"");
        assert_eq!(
            enc(Kind::TimestampTz, "10000-01-01 00:00:00+00"),
            "\"10000-01-01T00:00:00+00:00\""
        );
        assert_eq!(
            enc(Kind::TimestampTz, "0044-03-15 10:00:00+00 BC"),
            "\"0044-03-15T10:00:00+00:00 BC\""
        );
        assert_eq!(enc(Kind::Date, "0044-03-15 BC"), "\"0044-03-15 BC\"");
        assert_eq!(enc(Kind::Date, "2024-02-29"), "\"2024-02-29\"");
        assert_eq!(enc(Kind::Time, "24:00:00"), "\"24:00:00\"");
        assert_eq!(
            enc(Kind::TimeTz, "10:11:12.345+03"),
            "\"10:11:12.345+03:00\""
        );
        assert_eq!(enc(Kind::TimeTz, "00:00:00-08"), "\"00:00:00-08:00\"");
        assert_eq!(enc(Kind::TimeTz, "10:11:12+05:30"), "\"10:11:12+05:30\"");
        let null = ValueOptions {
            out_of_range: OutOfRange::Null,
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut r = Replaced::default();
        Encoder::new(Kind::Date, null)
            .encode("infinity", &mut out, &mut r)
            .unwrap();
        assert_eq!((out.as_slice(), r.out_of_range), (&b"null"[..], 1));
        let fail = ValueOptions {
            out_of_range: OutOfRange::Error,
            ..Default::default()
        };
        assert_eq!(
            enc_with(Kind::Date, fail, "10000-01-01")
                .unwrap_err()
                .message,
            "\"10000-01-01\" is outside RFC 3339 (out_of_range_dates: error)"
        );
    }

    /// What one value makes the column's schema need, from a fresh encoder.
    fn widen_of(kind: Kind, opts: ValueOptions, text: &str) -> Widen {
        let e = Encoder::new(kind, opts);
        e.encode(text, &mut Vec::new(), &mut Replaced::default())
            .unwrap();
        e.widened()
    }

    #[test]
    fn values_outside_the_narrow_schema_widen_it() {
        let d = ValueOptions::default();
        for (kind, text) in [
            (Kind::Float, "1.5"),
            (Kind::Float, "-0"),
            (Kind::Numeric, "12.50"),
            (Kind::Date, "2024-02-29"),
            (Kind::TimestampTz, "2024-02-29 10:11:12+00"),
            (Kind::Time, "24:00:00"),
            (Kind::TimeTz, "10:11:12+05:30:15"),
            (Kind::Json, "{\"a\": null}"),
            (Kind::Json, "\"null\""),
        ] {
            assert_eq!(
                widen_of(kind.clone(), d, text),
                Widen::NONE,
                "{kind:?} {text}"
            );
        }
        for (kind, text, widen) in [
            (Kind::Float, "NaN", Widen::SPECIAL_NUMBER),
            (Kind::Numeric, "-Infinity", Widen::SPECIAL_NUMBER),
            (Kind::Date, "infinity", Widen::NO_FORMAT),
            (Kind::Date, "0044-03-15 BC", Widen::NO_FORMAT),
            (Kind::Timestamp, "10000-01-01 00:00:00", Widen::NO_FORMAT),
            (Kind::Json, " null", Widen::JSON_TEXT),
        ] {
            assert_eq!(widen_of(kind.clone(), d, text), widen, "{kind:?} {text}");
        }
        // The peers' policies write null: nothing to widen.
        let null = ValueOptions {
            special_numbers: Policy::Null,
            out_of_range: Policy::Null,
            ..d
        };
        assert_eq!(widen_of(Kind::Float, null, "NaN"), Widen::NONE);
        assert_eq!(widen_of(Kind::Date, null, "infinity"), Widen::NONE);
        let ints = Kind::Array {
            element: Box::new(Kind::Int { min: 0, max: 0 }),
            delimiter: b',',
        };
        assert_eq!(widen_of(ints.clone(), d, "{1,NULL}"), Widen::NONE);
        assert_eq!(widen_of(ints, d, "{{1},{2}}"), Widen::NESTED_ARRAY);
        let floats = Kind::Array {
            element: Box::new(Kind::Float),
            delimiter: b',',
        };
        assert_eq!(
            widen_of(floats, d, "{{NaN}}"),
            Widen::NESTED_ARRAY.union(Widen::SPECIAL_NUMBER)
        );
    }

    #[test]
    fn a_json_null_turns_the_column_into_json_text() {
        let e = Encoder::new(Kind::Json, ValueOptions::default());
        let mut r = Replaced::default();
        let mut out = Vec::new();
        for text in ["{\"a\": 1}", "null", "{\"a\": 1}", "\"null\""] {
            e.encode(text, &mut out, &mut r).unwrap();
            out.push(b' ');
        }
        // Before: embedded. From the JSON null on: its text in a string.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a": 1} "null" "{\"a\": 1}" "\"null\"" "#
        );
        assert!(e.needs_announcement());
        e.announce();
        assert!(!e.needs_announcement());
        assert_eq!(e.widened(), Widen::JSON_TEXT);
    }

    /// What `writes_text_as_string` promises (LOG_BASED copies a string
    /// wal2json wrote without escapes as it is, on the strength of it).
    #[test]
    fn text_uuid_and_unknown_types_are_the_json_string_of_their_text() {
        let kinds = [
            Kind::Text { max_length: None },
            Kind::Text {
                max_length: Some(3),
            },
            Kind::Uuid,
            Kind::Other,
        ];
        for kind in kinds {
            assert!(Encoder::new(kind.clone(), ValueOptions::default()).writes_text_as_string());
            for text in [
                "",
                "plain",
                "12345 longer than max_length",
                "é ✓ \u{7f}",
                "a\"b",
            ] {
                assert_eq!(
                    enc(kind.clone(), text),
                    serde_json::to_string(text).unwrap()
                );
            }
        }
        for kind in [
            Kind::Bytea,
            Kind::Json,
            Kind::Date,
            Kind::Numeric,
            Kind::Hstore,
        ] {
            assert!(!Encoder::new(kind, ValueOptions::default()).writes_text_as_string());
        }
    }

    #[test]
    fn strings_bytes_json() {
        assert_eq!(enc(Kind::Text { max_length: None }, ""), "\"\"");
        assert_eq!(
            enc(Kind::Other, "a\"b\\c\n\t\u{1}é"),
            "\"a\\\"b\\\\c\\n\\t\\u0001é\""
        );
        assert_eq!(enc(Kind::Bytea, "\\x00ff"), "\"00ff\"");
        let b64 = ValueOptions {
            bytea: ByteaEncoding::Base64,
            ..Default::default()
        };
        assert_eq!(enc_with(Kind::Bytea, b64, "\\x00ff").unwrap(), "\"AP8=\"");
        assert_eq!(enc(Kind::Json, "{\"a\": [1, 2.50]}"), "{\"a\": [1, 2.50]}");
        assert_eq!(
            enc(Kind::Hstore, "\"a\"=>\"1\", \"b\\\"q\"=>NULL"),
            "{\"a\":\"1\",\"b\\\"q\":null}"
        );
        assert_eq!(enc(Kind::Hstore, ""), "{}");
        assert_eq!(enc(Kind::Bool, "t"), "true");
    }

    #[test]
    fn arrays() {
        let ints = Kind::Array {
            element: Box::new(Kind::Int { min: 0, max: 0 }),
            delimiter: b',',
        };
        assert_eq!(enc(ints.clone(), "{}"), "[]");
        assert_eq!(enc(ints.clone(), "{1,NULL,3}"), "[1,null,3]");
        assert_eq!(enc(ints.clone(), "{{1,2},{3,4}}"), "[[1,2],[3,4]]");
        assert_eq!(enc(ints.clone(), "[0:1]={5,6}"), "[5,6]");
        assert!(enc_with(ints, ValueOptions::default(), "{1,2").is_err());
        let texts = Kind::Array {
            element: Box::new(Kind::Text { max_length: None }),
            delimiter: b',',
        };
        assert_eq!(
            enc(texts, r#"{"a b","c\"d",NULL,"NULL","",x}"#),
            r#"["a b","c\"d",null,"NULL","","x"]"#
        );
        let boxes = Kind::Array {
            element: Box::new(Kind::Other),
            delimiter: b';',
        };
        assert_eq!(
            enc(boxes, "{(1,1),(0,0);(2,2),(1,1)}"),
            r#"["(1,1),(0,0)","(2,2),(1,1)"]"#
        );
        let ts = Kind::Array {
            element: Box::new(Kind::TimestampTz),
            delimiter: b',',
        };
        assert_eq!(
            enc(ts, r#"{"2024-01-01 00:00:00+00",infinity}"#),
            r#"["2024-01-01T00:00:00+00:00","infinity"]"#
        );
        let js = Kind::Array {
            element: Box::new(Kind::Json),
            delimiter: b',',
        };
        assert_eq!(enc(js, r#"{"{\"a\": 1}",NULL}"#), r#"[{"a": 1},null]"#);
    }
}
