//! Binary COPY: FULL_TABLE and INCREMENTAL read `COPY (SELECT …) TO STDOUT
//! (FORMAT binary)`, which costs the server far less than text (no output
//! function per value), and turn each value back into the exact text the
//! type's output function would have written, into one reused scratch
//! buffer, before handing it to the same [`Encoder`](crate::encode::Encoder)
//! the text and LOG_BASED paths use. So every path writes the same JSON by
//! construction: the per-type JSON rules live only in `encode`; this module
//! only replicates PostgreSQL's output functions, for the types where that is
//! simple and exact.
//!
//! Per column ([`Wire::of`]):
//!
//! | type | binary form | text written here (PostgreSQL's output, session settings of `encode::SESSION_SETTINGS`) |
//! |---|---|---|
//! | smallint, integer, bigint, oid | big-endian integer | decimal digits |
//! | real, double precision | IEEE 754 | shortest exact digits, fixed for exponents -4 ≤ e < 6 (real) or 15 (double), else `d.ddde+XX` (`float4out`/`float8out` with a positive `extra_float_digits`, Ryu); `NaN`, `Infinity`, `-Infinity`, `-0` |
//! | numeric | base-10000 digits, weight, sign, dscale | `numeric_out`: dscale fraction digits, `NaN`, `±Infinity` |
//! | boolean | one byte | `t` / `f` |
//! | text, varchar, char(n), name, citext | the characters (client encoding) | the same bytes |
//! | uuid | 16 bytes | `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` |
//! | date | days since 2000-01-01 | `YYYY-MM-DD`, ` BC`, `±infinity` (DateStyle ISO) |
//! | timestamp, timestamptz | µs since 2000-01-01 00:00 | `YYYY-MM-DD HH:MM:SS[.ffffff]`, `+00` for timestamptz (TimeZone UTC), ` BC`, `±infinity` |
//! | time | µs since midnight | `HH:MM:SS[.ffffff]` (up to `24:00:00`) |
//! | everything else | asked for as text | `format('%s', col)`: the type's own output function (not a `::text` cast, which differs for inet, cidr, char(n), "char", boolean) |
//!
//! Fractions drop trailing zeros as PostgreSQL does. The equality of both
//! paths is tested against the server on edge values of every type
//! (`tests/tap/binary.rs`).
//!
//! The hot path skips the text: [`Wire::write_json`] writes the JSON of the
//! plain values (integers, booleans, uuids, finite numbers, dates and
//! timestamps with years 1–9999, times) straight from the binary form,
//! the bytes the encoder would write for their text, and declines
//! everything else (NaN, infinities, out-of-range dates, strings, …),
//! which then takes the text path above. The unit tests below check the two
//! agree on every edge value, and the server tests check both against
//! PostgreSQL.
//!
//! The wire format: an 11-byte signature, flags, a header extension, then
//! per row a 16-bit field count and per field a 32-bit length (-1 = NULL)
//! and the bytes; a count of -1 ends the data. Rows may be split across
//! CopyData messages; [`copy_rows`] keeps the unfinished tail.

use std::io::Write as _;
use std::ops::Range;

use futures_util::{pin_mut, TryStreamExt};
use singer::Writable;
use tokio_postgres::Transaction;

use crate::discovery::Column;
use crate::error::{bail, Result};
use crate::types::Kind;
use crate::values::ValueOptions;

/// How one column travels in the binary COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// smallint, integer, bigint (told apart by length).
    Int,
    /// oid: unsigned 32 bits.
    Oid,
    /// real or double precision (by length).
    Float,
    /// numeric.
    Numeric,
    /// boolean.
    Bool,
    /// A string type: the bytes are its text.
    Str,
    /// uuid.
    Uuid,
    /// date.
    Date,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone.
    TimestampTz,
    /// time without time zone.
    Time,
    /// Read as the output function's text (`format('%s', col)`).
    AsText,
}

impl Wire {
    /// The wire form of `column`.
    pub fn of(column: &Column) -> Wire {
        match &column.kind {
            Kind::Int { min: 0, .. } => Wire::Oid,
            Kind::Int { .. } => Wire::Int,
            Kind::Float => Wire::Float,
            Kind::Numeric => Wire::Numeric,
            Kind::Bool => Wire::Bool,
            // "char" sends its raw byte; its output escapes bytes >= 128.
            Kind::Text { .. } if column.create_type != "\"char\"" => Wire::Str,
            Kind::Uuid => Wire::Uuid,
            Kind::Date => Wire::Date,
            Kind::Timestamp => Wire::Timestamp,
            Kind::TimestampTz => Wire::TimestampTz,
            Kind::Time => Wire::Time,
            _ => Wire::AsText,
        }
    }

    /// The SELECT-list expression reading `quoted` (a quoted column name)
    /// in this form; NULL stays NULL (`format` would make it `''`).
    pub fn select_expr(self, quoted: &str) -> String {
        match self {
            Wire::AsText => {
                format!("CASE WHEN {quoted} IS NULL THEN NULL ELSE format('%s', {quoted}) END")
            }
            _ => quoted.to_string(),
        }
    }

    /// The type's text output of the binary `value`: `value` itself for
    /// strings, else written into `scratch`.
    pub fn text<'a>(self, value: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<&'a str, String> {
        let bytes: &[u8] = match self {
            Wire::Str | Wire::AsText => value,
            _ => {
                scratch.clear();
                self.write_text(value, scratch)?;
                scratch
            }
        };
        std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
    }

    fn write_text(self, v: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let bad = || format!("{} bytes are not a binary {self:?} value", v.len());
        match (self, v.len()) {
            (Wire::Int, 2) => push_int(out, i16::from_be_bytes([v[0], v[1]]).into()),
            (Wire::Int, 4) => push_int(out, be_i32(v).into()),
            (Wire::Int, 8) => push_int(out, be_i64(v)),
            (Wire::Oid, 4) => push_int(out, (be_i32(v) as u32).into()),
            (Wire::Float, 4) => push_float(out, f32::from_be_bytes(v.try_into().unwrap()), 6),
            (Wire::Float, 8) => push_float(out, f64::from_be_bytes(v.try_into().unwrap()), 15),
            (Wire::Numeric, n) if n >= 8 => push_numeric(out, v).ok_or_else(bad)?,
            (Wire::Bool, 1) => out.push(if v[0] != 0 { b't' } else { b'f' }),
            (Wire::Uuid, 16) => {
                for (i, b) in v.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push(b'-');
                    }
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 15) as usize]);
                }
            }
            (Wire::Date, 4) => match be_i32(v) {
                i32::MIN => out.extend_from_slice(b"-infinity"),
                i32::MAX => out.extend_from_slice(b"infinity"),
                days => {
                    let (y, m, d) = j2date(i64::from(days) + POSTGRES_EPOCH_JDATE);
                    push_date(out, y, m, d);
                    push_bc(out, y);
                }
            },
            (Wire::Timestamp | Wire::TimestampTz, 8) => match be_i64(v) {
                i64::MIN => out.extend_from_slice(b"-infinity"),
                i64::MAX => out.extend_from_slice(b"infinity"),
                us => {
                    let mut date = us.div_euclid(USECS_PER_DAY);
                    let time = us.rem_euclid(USECS_PER_DAY);
                    date += POSTGRES_EPOCH_JDATE;
                    let (y, m, d) = j2date(date);
                    push_date(out, y, m, d);
                    out.push(b' ');
                    push_time(out, time);
                    if self == Wire::TimestampTz {
                        out.extend_from_slice(b"+00");
                    }
                    push_bc(out, y);
                }
            },
            (Wire::Time, 8) => push_time(out, be_i64(v)),
            _ => return Err(bad()),
        }
        Ok(())
    }
}

impl Wire {
    /// Appends the JSON of the binary `value` of a column of `kind` under
    /// `opts` when it is a plain value (see the module documentation), and
    /// says whether it did; on `false` nothing was written and the value
    /// takes the text path ([`Wire::text`] and the column's encoder).
    #[inline]
    pub fn write_json(self, v: &[u8], kind: &Kind, opts: &ValueOptions, out: &mut Vec<u8>) -> bool {
        match (self, v.len()) {
            (Wire::Int, 2) => push_int(out, i16::from_be_bytes([v[0], v[1]]).into()),
            (Wire::Int, 4) => push_int(out, be_i32(v).into()),
            (Wire::Int, 8) => push_int(out, be_i64(v)),
            (Wire::Oid, 4) => push_int(out, (be_i32(v) as u32).into()),
            (Wire::Bool, 1) => out.extend_from_slice(if v[0] != 0 { b"true" } else { b"false" }),
            (Wire::Float, 4) => {
                return push_json_float(out, f32::from_be_bytes(v.try_into().unwrap()), 6)
            }
            (Wire::Float, 8) => {
                return push_json_float(out, f64::from_be_bytes(v.try_into().unwrap()), 15)
            }
            (Wire::Numeric, n) if n >= 8 => {
                // Only plain signs: NaN and ±Infinity take the text path.
                if !matches!(u16::from_be_bytes([v[4], v[5]]), 0x0000 | 0x4000) {
                    return false;
                }
                let start = out.len();
                let quoted = opts.decimal_as_string && *kind == Kind::Numeric;
                if quoted {
                    out.push(b'"');
                }
                if push_numeric(out, v).is_none() {
                    out.truncate(start);
                    return false;
                }
                if quoted {
                    out.push(b'"');
                }
            }
            (Wire::Uuid, 16) => {
                out.push(b'"');
                self.write_text(v, out).expect("16 bytes are a uuid");
                out.push(b'"');
            }
            (Wire::Date, 4) => {
                let days = be_i32(v);
                if days == i32::MIN || days == i32::MAX {
                    return false;
                }
                let Some((y, m, d)) = rfc3339_date(i64::from(days) + POSTGRES_EPOCH_JDATE) else {
                    return false;
                };
                let mut b = [0u8; 12];
                b[0] = b'"';
                date_digits(&mut b[1..11], y, m, d);
                b[11] = b'"';
                out.extend_from_slice(&b);
            }
            (Wire::Timestamp | Wire::TimestampTz, 8) => {
                let us = be_i64(v);
                if us == i64::MIN || us == i64::MAX {
                    return false;
                }
                let date = us.div_euclid(USECS_PER_DAY) + POSTGRES_EPOCH_JDATE;
                let time = us.rem_euclid(USECS_PER_DAY) as u64;
                let Some((y, m, d)) = rfc3339_date(date) else {
                    return false;
                };
                // "YYYY-MM-DDTHH:MM:SS.ffffff+00:00"
                let mut b = [0u8; 34];
                b[0] = b'"';
                date_digits(&mut b[1..11], y, m, d);
                b[11] = b'T';
                let mut n = 12 + time_digits(&mut b[12..27], time);
                if self == Wire::TimestampTz || opts.naive_timestamp_offset {
                    b[n..n + 6].copy_from_slice(b"+00:00");
                    n += 6;
                }
                b[n] = b'"';
                out.extend_from_slice(&b[..=n]);
            }
            (Wire::Time, 8) => {
                let us = be_i64(v);
                if !(0..=USECS_PER_DAY).contains(&us) {
                    return false;
                }
                let mut b = [0u8; 17];
                b[0] = b'"';
                let n = 1 + time_digits(&mut b[1..16], us as u64);
                b[n] = b'"';
                out.extend_from_slice(&b[..=n]);
            }
            _ => return false,
        }
        true
    }
}

/// A finite float as the encoder writes its text (`write_float`: `-0`
/// becomes `-0.0`); `false` for NaN and ±Infinity, which take the text path.
fn push_json_float<F: Float>(out: &mut Vec<u8>, f: F, fixed_below: i32) -> bool {
    let x: f64 = f.into();
    if !x.is_finite() {
        return false;
    }
    if x == 0.0 && x.is_sign_negative() {
        out.extend_from_slice(b"-0.0");
    } else {
        push_float(out, f, fixed_below);
    }
    true
}

/// Year, month and day of Julian day `jd` when the year is one RFC 3339
/// can write (1 to 9999).
#[inline]
fn rfc3339_date(jd: i64) -> Option<(u32, u32, u32)> {
    let (y, m, d) = j2date(jd);
    (1..=9999).contains(&y).then_some((y as u32, m, d))
}

/// Two decimal digits of `n` (< 100).
#[inline]
fn two(b: &mut [u8], n: u32) {
    b[0] = b'0' + (n / 10) as u8;
    b[1] = b'0' + (n % 10) as u8;
}

/// `YYYY-MM-DD` into `b` (10 bytes), `year` in 1..=9999.
#[inline]
fn date_digits(b: &mut [u8], year: u32, month: u32, day: u32) {
    two(&mut b[0..2], year / 100);
    two(&mut b[2..4], year % 100);
    b[4] = b'-';
    two(&mut b[5..7], month);
    b[7] = b'-';
    two(&mut b[8..10], day);
}

/// `HH:MM:SS` and `.ffffff` without trailing zeros, from µs since
/// midnight (up to `24:00:00`), into `b` (15 bytes); the length written.
#[inline]
fn time_digits(b: &mut [u8], us: u64) -> usize {
    let secs = us / 1_000_000;
    let mut frac = (us % 1_000_000) as u32;
    two(&mut b[0..2], (secs / 3600) as u32);
    b[2] = b':';
    two(&mut b[3..5], (secs / 60 % 60) as u32);
    b[5] = b':';
    two(&mut b[6..8], (secs % 60) as u32);
    if frac == 0 {
        return 8;
    }
    b[8] = b'.';
    let mut n = 15;
    while frac.is_multiple_of(10) {
        frac /= 10;
        n -= 1;
    }
    for i in (9..n).rev() {
        b[i] = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    n
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const USECS_PER_DAY: i64 = 86_400_000_000;
/// Julian day of 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;

fn be_i32(v: &[u8]) -> i32 {
    i32::from_be_bytes(v.try_into().unwrap())
}

fn be_i64(v: &[u8]) -> i64 {
    i64::from_be_bytes(v.try_into().unwrap())
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_uint(out, n.unsigned_abs(), 1);
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_uint(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[i..]);
}

/// A float as `float4out`/`float8out` write it with a positive
/// `extra_float_digits` (PostgreSQL's Ryu): the fewest digits strictly inside the interval
/// of values that read back as the float (PostgreSQL builds Ryu without
/// `STRICTLY_SHORTEST`, so an interval bound never counts), of those the
/// ones closest to the exact value, ties to even; fixed-point when the
/// decimal exponent is in [-4, `fixed_below`), else `d.ddde±XX`.
///
/// The candidate comes from `zmij` (Schubfach: the fewest digits, closest
/// to the value; about ten times faster than `{:e}`). Like Rust's `{:e}`
/// it counts a bound when the mantissa is even, and shortest algorithms
/// may break an exact tie either way (`273929.625f32`: Rust `2.7392963e5`,
/// zmij and PostgreSQL `2.7392962e5`). So a candidate on a bound or next to
/// a tie is not trusted: from its length up, the digits are those of
/// `{:.N$e}` (correctly rounded, ties to even), kept once they read back as
/// the float without lying on a bound.
fn push_float<F: Float>(out: &mut Vec<u8>, f: F, fixed_below: i32) {
    let x: f64 = f.into();
    if x.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if x.is_sign_negative() {
        out.push(b'-');
    }
    if x.is_infinite() {
        out.extend_from_slice(b"Infinity");
        return;
    }
    if x == 0.0 {
        out.push(b'0');
        return;
    }
    let f = f.abs();
    let mut shortest = zmij::Buffer::new();
    let fast = Decimal::parse(shortest.format_finite(f).as_bytes());
    let mut precision = fast.len - 1; // digits after the point
    let mut rounded = [0u8; 40];
    let mut chosen: Option<Decimal> = None;
    if !fast.on_bound(f) && !fast.next_to_tie(f) {
        // Neither on a bound nor next to an exact tie: zmij's digits are Ryu's.
        chosen = Some(fast);
        precision = usize::MAX;
    }
    while precision < 20 {
        let r = format_into(&mut rounded, format_args!("{f:.precision$e}"));
        let d = Decimal::parse(r);
        let reads_back = std::str::from_utf8(r)
            .ok()
            .and_then(|t| t.parse::<F>().ok())
            .is_some_and(|back| back == f);
        if reads_back && !d.on_bound(f) {
            chosen = Some(d);
            break;
        }
        precision += 1;
    }
    let d = chosen.unwrap_or(fast);
    let (digits, exp) = (&d.digits[..d.len], d.exp);
    if (-4..fixed_below).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        push_uint(out, exp.unsigned_abs().into(), 2);
    }
}

/// real and double precision, for [`push_float`].
trait Float:
    Copy + std::fmt::LowerExp + Into<f64> + std::str::FromStr + PartialEq + zmij::Float
{
    fn abs(self) -> Self;
    /// `(m, e)` with the value `m * 2^e`, and whether the gap to the next
    /// smaller float is half the gap to the next larger one.
    fn parts(self) -> (u64, i32, bool);
}

impl Float for f32 {
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn parts(self) -> (u64, i32, bool) {
        let bits = self.to_bits();
        let exp = ((bits >> 23) & 0xff) as i32;
        let frac = u64::from(bits & 0x7f_ffff);
        match exp {
            0 => (frac, -149, false),
            _ => (frac | 1 << 23, exp - 150, frac == 0 && exp > 1),
        }
    }
}

impl Float for f64 {
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn parts(self) -> (u64, i32, bool) {
        let bits = self.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1 << 52) - 1);
        match exp {
            0 => (frac, -1074, false),
            _ => (frac | 1 << 52, exp - 1075, frac == 0 && exp > 1),
        }
    }
}

/// Decimal digits (no trailing zeros) and the exponent of the first one.
#[derive(Clone, Copy)]
struct Decimal {
    digits: [u8; 24],
    len: usize,
    exp: i32,
}

impl Decimal {
    /// From a positive float's text in any plain form: zmij's (`0.001`,
    /// `123456789.0`, `1.5e+20`, `5e-324`) or `{:e}`'s (`2.7392962e5`).
    fn parse(s: &[u8]) -> Decimal {
        let (mantissa, exp) = match s.iter().position(|&b| b == b'e') {
            Some(i) => (
                &s[..i],
                std::str::from_utf8(&s[i + 1..])
                    .ok()
                    .and_then(|t| t.parse::<i32>().ok())
                    .expect("a float's exponent is an integer"),
            ),
            None => (s, 0),
        };
        let int_len = mantissa
            .iter()
            .position(|&b| b == b'.')
            .unwrap_or(mantissa.len()) as i32;
        let mut d = Decimal {
            digits: [0; 24],
            len: 0,
            exp: 0,
        };
        let mut leading = 0;
        for &b in mantissa.iter().filter(|&&b| b != b'.') {
            if d.len == 0 && b == b'0' {
                leading += 1;
            } else if d.len < d.digits.len() {
                d.digits[d.len] = b;
                d.len += 1;
            }
        }
        while d.len > 1 && d.digits[d.len - 1] == b'0' {
            d.len -= 1;
        }
        d.exp = exp + int_len - 1 - leading;
        d
    }

    /// Whether this decimal is exactly the midpoint between `f` and a
    /// neighbouring float (a bound PostgreSQL's Ryu does not accept).
    fn on_bound<F: Float>(&self, f: F) -> bool {
        let (m, e, half_below) = f.parts();
        let upper = (2 * m + 1, e - 1);
        let lower = if half_below {
            (4 * m - 1, e - 2)
        } else {
            (2 * m - 1, e - 1)
        };
        self.equals(upper) || self.equals(lower)
    }

    /// Whether `f` lies exactly half a unit of the last digit away from
    /// this decimal (a tie, which Rust may break differently from Ryu).
    fn next_to_tie<F: Float>(&self, f: F) -> bool {
        let (m, e, _) = f.parts();
        let tz = m.trailing_zeros();
        let exact = (m >> tz, e + tz as i32);
        let (d, k) = self.integer();
        equals(d * 10 + 5, k - 1, exact) || equals(d * 10 - 5, k - 1, exact)
    }

    /// Whether this decimal equals `odd * 2^e2` (`odd` odd).
    fn equals(&self, bound: (u64, i32)) -> bool {
        let (d, k) = self.integer();
        equals(d, k, bound)
    }

    /// `(d, k)` with the value `d * 10^k`.
    fn integer(&self) -> (u128, i32) {
        let mut d: u128 = 0;
        for &b in &self.digits[..self.len] {
            d = d * 10 + u128::from(b - b'0');
        }
        (d, self.exp - (self.len as i32 - 1))
    }
}

/// Whether `d * 10^k` equals `odd * 2^e2` (`odd` odd).
fn equals(d: u128, k: i32, (odd, e2): (u64, i32)) -> bool {
    if d == 0 {
        return false;
    }
    let t = d.trailing_zeros() as i32;
    let d_odd = d >> t;
    let pow5 = |n: u32| 5u128.checked_pow(n);
    if k >= 0 {
        // d_odd * 5^k * 2^(t + k)
        t + k == e2
            && pow5(k as u32)
                .and_then(|p| p.checked_mul(d_odd))
                .is_some_and(|v| v == u128::from(odd))
    } else {
        // d_odd / 5^|k| * 2^(t + k)
        t + k == e2
            && pow5(k.unsigned_abs())
                .and_then(|p| p.checked_mul(u128::from(odd)))
                .is_some_and(|v| v == d_odd)
    }
}

/// Formats into a stack buffer; returns the bytes written.
fn format_into<'a>(buf: &'a mut [u8; 40], args: std::fmt::Arguments<'_>) -> &'a [u8] {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    cursor.write_fmt(args).expect("a float fits in 40 bytes");
    let len = cursor.position() as usize;
    &buf[..len]
}

/// `numeric_out` of a binary numeric; `None` if malformed.
fn push_numeric(out: &mut Vec<u8>, v: &[u8]) -> Option<()> {
    let ndigits = i16::from_be_bytes([v[0], v[1]]);
    let weight = i32::from(i16::from_be_bytes([v[2], v[3]]));
    let sign = u16::from_be_bytes([v[4], v[5]]);
    let dscale = usize::from(u16::from_be_bytes([v[6], v[7]]));
    let ndigits = usize::try_from(ndigits).ok()?;
    if v.len() != 8 + 2 * ndigits {
        return None;
    }
    let digit = |i: i32| -> u64 {
        if i >= 0 && (i as usize) < ndigits {
            let p = 8 + 2 * i as usize;
            u16::from_be_bytes([v[p], v[p + 1]]).into()
        } else {
            0
        }
    };
    match sign {
        0xC000 => {
            out.extend_from_slice(b"NaN");
            return Some(());
        }
        0xD000 => {
            out.extend_from_slice(b"Infinity");
            return Some(());
        }
        0xF000 => {
            out.extend_from_slice(b"-Infinity");
            return Some(());
        }
        0x4000 => out.push(b'-'),
        0x0000 => {}
        _ => return None,
    }
    if weight < 0 {
        out.push(b'0');
    } else {
        push_uint(out, digit(0), 1);
        for d in 1..=weight {
            push_uint(out, digit(d), 4);
        }
    }
    if dscale > 0 {
        out.push(b'.');
        let start = out.len();
        let mut d = weight + 1;
        while out.len() - start < dscale {
            push_uint(out, digit(d), 4);
            d += 1;
        }
        out.truncate(start + dscale);
    }
    Some(())
}

/// PostgreSQL's `j2date`: Julian day → (year, month, day), year 0 = 1 BC.
fn j2date(jd: i64) -> (i64, u32, u32) {
    let mut julian = jd as u64 + 32044;
    let mut quad = julian / 146_097;
    let extra = (julian - quad * 146_097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146_097;
    quad = julian / 1461;
    julian -= quad * 1461;
    let mut y = julian * 4 / 1461;
    julian = if y != 0 {
        (julian + 305) % 365
    } else {
        (julian + 306) % 366
    } + 123;
    y += quad * 4;
    let year = y as i64 - 4800;
    let q = julian * 2141 / 65536;
    let day = julian - 7834 * q / 256;
    let month = (q + 10) % 12 + 1;
    (year, month as u32, day as u32)
}

/// `YYYY-MM-DD` (ISO), the year as BC years when `year` ≤ 0.
fn push_date(out: &mut Vec<u8>, year: i64, month: u32, day: u32) {
    let shown = if year > 0 { year } else { 1 - year };
    push_uint(out, shown as u64, 4);
    out.push(b'-');
    push_uint(out, month.into(), 2);
    out.push(b'-');
    push_uint(out, day.into(), 2);
}

fn push_bc(out: &mut Vec<u8>, year: i64) {
    if year <= 0 {
        out.extend_from_slice(b" BC");
    }
}

/// `HH:MM:SS` and `.ffffff` without trailing zeros, from µs.
fn push_time(out: &mut Vec<u8>, us: i64) {
    let us = us as u64;
    let secs = us / 1_000_000;
    let frac = us % 1_000_000;
    push_uint(out, secs / 3600, 2);
    out.push(b':');
    push_uint(out, secs / 60 % 60, 2);
    out.push(b':');
    push_uint(out, secs % 60, 2);
    if frac != 0 {
        out.push(b'.');
        push_uint(out, frac, 6);
        while out.last() == Some(&b'0') {
            out.pop();
        }
    }
}

/// Runs `COPY (<query>) TO STDOUT (FORMAT binary)` for a SELECT list of
/// `columns` expressions and calls `on_row` with each row's bytes and the
/// range of every field in them (`None` for NULL). Returns the number of
/// rows.
pub async fn copy_rows<F>(
    tx: &Transaction<'_>,
    query: &str,
    columns: usize,
    writable: &Writable,
    mut on_row: F,
) -> Result<u64>
where
    F: FnMut(&[u8], &[Option<Range<usize>>]) -> Result<()>,
{
    let sql = format!("COPY ({query}) TO STDOUT (FORMAT binary)");
    let stream = tx.copy_out(sql.as_str()).await?;
    pin_mut!(stream);
    let mut reader = RowReader::new(columns);
    while let Some(chunk) = stream.try_next().await? {
        writable.wait().await;
        reader.feed(&chunk, &mut on_row)?;
    }
    reader.finish()
}

/// Splits a binary COPY byte stream into rows.
pub struct RowReader {
    columns: usize,
    header_done: bool,
    ended: bool,
    rows: u64,
    pending: Vec<u8>,
    fields: Vec<Option<Range<usize>>>,
}

impl RowReader {
    /// A reader of rows of `columns` fields.
    pub fn new(columns: usize) -> RowReader {
        RowReader {
            columns,
            header_done: false,
            ended: false,
            rows: 0,
            pending: Vec::new(),
            fields: Vec::with_capacity(columns),
        }
    }

    /// Calls `on_row` for every row completed by `chunk`.
    pub fn feed<F>(&mut self, chunk: &[u8], on_row: &mut F) -> Result<()>
    where
        F: FnMut(&[u8], &[Option<Range<usize>>]) -> Result<()>,
    {
        if self.pending.is_empty() {
            let used = self.parse(chunk, on_row)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let used = self.parse(&pending, on_row)?;
            self.pending = pending;
            self.pending.drain(..used);
        }
        Ok(())
    }

    /// The number of rows, once the data ended as it must.
    pub fn finish(self) -> Result<u64> {
        if !self.ended || !self.pending.is_empty() {
            bail!("binary COPY output ended in the middle of a row");
        }
        Ok(self.rows)
    }

    /// Parses the complete rows at the start of `buf`; returns the bytes used.
    fn parse<F>(&mut self, buf: &[u8], on_row: &mut F) -> Result<usize>
    where
        F: FnMut(&[u8], &[Option<Range<usize>>]) -> Result<()>,
    {
        let mut pos = 0;
        if !self.header_done {
            const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
            if buf.len() < 19 {
                return Ok(0);
            }
            if &buf[..11] != SIGNATURE {
                bail!("binary COPY output does not start with the PGCOPY signature");
            }
            let ext = be_i32(&buf[15..19]) as usize;
            if buf.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        loop {
            if self.ended {
                if pos < buf.len() {
                    bail!("binary COPY output has data after its end marker");
                }
                return Ok(pos);
            }
            let Some(count) = buf.get(pos..pos + 2) else {
                return Ok(pos);
            };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.ended = true;
                pos += 2;
                continue;
            }
            if count as usize != self.columns {
                bail!(
                    "binary COPY row has {count} fields, expected {}",
                    self.columns
                );
            }
            let mut p = pos + 2;
            self.fields.clear();
            for _ in 0..count {
                let Some(len) = buf.get(p..p + 4) else {
                    return Ok(pos);
                };
                let len = be_i32(len);
                p += 4;
                if len < 0 {
                    self.fields.push(None);
                } else {
                    let end = p + len as usize;
                    if end > buf.len() {
                        return Ok(pos);
                    }
                    self.fields.push(Some(p..end));
                    p = end;
                }
            }
            on_row(buf, &self.fields)?;
            self.rows += 1;
            pos = p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(wire: Wire, v: &[u8]) -> String {
        let mut scratch = Vec::new();
        wire.text(v, &mut scratch).unwrap().to_string()
    }

    #[test]
    fn floats_as_postgres_writes_them() {
        let f8 = |x: f64| text(Wire::Float, &x.to_be_bytes());
        assert_eq!(f8(0.1), "0.1");
        assert_eq!(f8(1e15), "1e+15");
        assert_eq!(f8(123456789012345.0), "123456789012345");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(0.00001), "1e-05");
        assert_eq!(f8(-1.5e300), "-1.5e+300");
        assert_eq!(f8(5e-324), "5e-324");
        assert_eq!(f8(-0.0), "-0");
        assert_eq!(f8(f64::NEG_INFINITY), "-Infinity");
        let f4 = |x: f32| text(Wire::Float, &x.to_be_bytes());
        assert_eq!(f4(1.5), "1.5");
        assert_eq!(f4(100000.0), "100000");
        assert_eq!(f4(1000000.0), "1e+06");
        assert_eq!(f4(0.1), "0.1");
        assert_eq!(f4(-2_191_437.0 / 8.0), "-273929.62"); // exactly -273929.625
        assert_eq!(f4(389221184.0), "3.8922118e+08");
    }

    #[test]
    fn dates_and_times() {
        let ts = |us: i64| text(Wire::TimestampTz, &us.to_be_bytes());
        assert_eq!(ts(0), "2000-01-01 00:00:00+00");
        assert_eq!(ts(-1), "1999-12-31 23:59:59.999999+00");
        assert_eq!(ts(500_000), "2000-01-01 00:00:00.5+00");
        let date = |d: i32| text(Wire::Date, &d.to_be_bytes());
        assert_eq!(date(60), "2000-03-01");
        assert_eq!(date(-730_119), "0001-01-01");
        assert_eq!(date(-730_120), "0001-12-31 BC");
        assert_eq!(date(i32::MAX), "infinity");
    }

    #[test]
    fn numerics() {
        let num = |parts: &[i16]| {
            let b: Vec<u8> = parts.iter().flat_map(|p| p.to_be_bytes()).collect();
            text(Wire::Numeric, &b)
        };
        // 12.50: 1 digit group before the point, weight 0, dscale 2.
        assert_eq!(num(&[2, 0, 0, 2, 12, 5000]), "12.50");
        assert_eq!(num(&[1, -1, 0x4000, 2, 100]), "-0.01");
        assert_eq!(num(&[0, 0, 0, 0]), "0");
        assert_eq!(num(&[1, 1, 0, 0, 1]), "10000");
    }

    #[test]
    fn rows_split_anywhere() {
        let mut data = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        for v in [1i32, 2] {
            data.extend_from_slice(&2i16.to_be_bytes());
            data.extend_from_slice(&4i32.to_be_bytes());
            data.extend_from_slice(&v.to_be_bytes());
            data.extend_from_slice(&(-1i32).to_be_bytes());
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        for cut in 0..data.len() {
            let mut reader = RowReader::new(2);
            let mut seen = Vec::new();
            let mut on_row = |buf: &[u8], f: &[Option<Range<usize>>]| {
                seen.push((be_i32(&buf[f[0].clone().unwrap()]), f[1].is_none()));
                Ok(())
            };
            reader.feed(&data[..cut], &mut on_row).unwrap();
            reader.feed(&data[cut..], &mut on_row).unwrap();
            assert_eq!(reader.finish().unwrap(), 2);
            assert_eq!(seen, [(1, true), (2, true)]);
        }
    }
}

#[cfg(test)]
mod direct_tests {
    use super::*;
    use crate::encode::{Encoder, Replaced};
    use crate::values::{OutOfRange, SpecialNumbers};

    /// Both paths of one binary value: (direct, via text); direct is None
    /// when it declines.
    fn both(wire: Wire, kind: Kind, opts: ValueOptions, v: &[u8]) -> (Option<String>, String) {
        let mut direct = Vec::new();
        let wrote = wire.write_json(v, &kind, &opts, &mut direct);
        assert!(
            wrote || direct.is_empty(),
            "a declined value wrote {direct:?}"
        );
        let mut scratch = Vec::new();
        let text = wire.text(v, &mut scratch).unwrap().to_string();
        let mut via = Vec::new();
        Encoder::new(kind, opts)
            .encode(&text, &mut via, &mut Replaced::default())
            .unwrap();
        let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (wrote.then(|| s(direct)), s(via))
    }

    fn opts_all() -> Vec<ValueOptions> {
        let mut v = Vec::new();
        for decimal_as_string in [false, true] {
            for naive_timestamp_offset in [false, true] {
                for out_of_range in [OutOfRange::String, OutOfRange::Null] {
                    v.push(ValueOptions {
                        decimal_as_string,
                        naive_timestamp_offset,
                        out_of_range,
                        special_numbers: SpecialNumbers::String,
                        ..ValueOptions::default()
                    });
                }
            }
        }
        v
    }

    fn check(wire: Wire, kind: Kind, values: &[Vec<u8>]) -> usize {
        let mut direct = 0;
        for opts in opts_all() {
            for v in values {
                let (d, via) = both(wire, kind.clone(), opts, v);
                if let Some(d) = d {
                    assert_eq!(d, via, "{wire:?} {v:?} {opts:?}");
                    direct += 1;
                }
            }
        }
        direct
    }

    fn numeric(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(ndigits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in ndigits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    // 273929.625 is exact in f32 (the tie of `push_float`'s documentation).
    #[allow(clippy::excessive_precision)]
    fn direct_json_is_the_text_paths_json() {
        let int = Kind::Int {
            min: i64::MIN.into(),
            max: i64::MAX.into(),
        };
        let ints: Vec<Vec<u8>> = [0i64, 1, -1, 9, 10, -10, i64::MIN, i64::MAX, 1234567890123]
            .iter()
            .map(|n| n.to_be_bytes().to_vec())
            .chain(
                [i32::MIN, i32::MAX, 0]
                    .iter()
                    .map(|n| n.to_be_bytes().to_vec()),
            )
            .chain(
                [i16::MIN, i16::MAX, -5]
                    .iter()
                    .map(|n| n.to_be_bytes().to_vec()),
            )
            .collect();
        assert_eq!(check(Wire::Int, int, &ints), ints.len() * 8);
        let oid = Kind::Int {
            min: 0,
            max: u32::MAX.into(),
        };
        let oids = vec![u32::MAX.to_be_bytes().to_vec(), 0u32.to_be_bytes().to_vec()];
        assert_eq!(check(Wire::Oid, oid, &oids), 16);
        assert_eq!(check(Wire::Bool, Kind::Bool, &[vec![0], vec![1]]), 16);
        let uuid = vec![(0u8..16).collect::<Vec<u8>>(), vec![0xff; 16]];
        assert_eq!(check(Wire::Uuid, Kind::Uuid, &uuid), 16);

        let f64s: Vec<Vec<u8>> = [
            0.0f64,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e-5,
            1e-4,
            123456789012345.0,
            1e15,
            1e16,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            2.0f64.powi(60),
            0.3,
            1.0 / 3.0,
        ]
        .iter()
        .map(|x| x.to_be_bytes().to_vec())
        .collect();
        assert_eq!(check(Wire::Float, Kind::Float, &f64s), f64s.len() * 8);
        let f32s: Vec<Vec<u8>> = [
            0.0f32,
            -0.0,
            273929.625,
            1e6,
            999999.0,
            f32::MAX,
            1e-45,
            0.1,
        ]
        .iter()
        .map(|x| x.to_be_bytes().to_vec())
        .collect();
        assert_eq!(check(Wire::Float, Kind::Float, &f32s), f32s.len() * 8);
        let specials: Vec<Vec<u8>> = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
            .iter()
            .map(|x| x.to_be_bytes().to_vec())
            .collect();
        assert_eq!(check(Wire::Float, Kind::Float, &specials), 0);

        let nums = vec![
            numeric(&[], 0, 0, 0),
            numeric(&[], 0, 0, 2),
            numeric(&[1], 0, 0x4000, 0),
            numeric(&[12, 3400], 0, 0, 2),
            numeric(&[1, 2345, 6789], 2, 0x4000, 0),
            numeric(&[5], -1, 0, 4),
            numeric(&[5], -2, 0x4000, 10),
            numeric(&[9999, 9999, 9999, 9999], 1, 0, 9),
        ];
        assert_eq!(check(Wire::Numeric, Kind::Numeric, &nums), nums.len() * 8);
        let special_nums = vec![
            numeric(&[], 0, 0xC000, 0),
            numeric(&[], 0, 0xD000, 0),
            numeric(&[], 0, 0xF000, 0),
        ];
        assert_eq!(check(Wire::Numeric, Kind::Numeric, &special_nums), 0);

        // Days since 2000-01-01: 0001-01-01, 9999-12-31, leap days, BC,
        // year 10000 and the infinities.
        let days = [
            0i32,
            -730119,
            2921939,
            59,
            60,
            1154,
            -1,
            -730120,
            2921940,
            i32::MIN,
            i32::MAX,
        ];
        let dates: Vec<Vec<u8>> = days.iter().map(|d| d.to_be_bytes().to_vec()).collect();
        assert_eq!(check(Wire::Date, Kind::Date, &dates), 7 * 8);

        let day = USECS_PER_DAY;
        let us = [
            0i64,
            1,
            10,
            123_456,
            999_999,
            1_000_000,
            2_500_000,
            day - 1,
            -1,
            -day,
            -730119 * day,
            2921940 * day - 1,
            -730119 * day - 1,
            2921940 * day,
            i64::MIN,
            i64::MAX,
        ];
        let stamps: Vec<Vec<u8>> = us.iter().map(|u| u.to_be_bytes().to_vec()).collect();
        assert_eq!(check(Wire::TimestampTz, Kind::TimestampTz, &stamps), 12 * 8);
        assert_eq!(check(Wire::Timestamp, Kind::Timestamp, &stamps), 12 * 8);

        let times: Vec<Vec<u8>> = [0i64, 1, 120_000, 45_296_789_000, day - 1, day]
            .iter()
            .map(|u| u.to_be_bytes().to_vec())
            .collect();
        assert_eq!(check(Wire::Time, Kind::Time, &times), times.len() * 8);
    }
}
