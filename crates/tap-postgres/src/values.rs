//! Value options: the policies the tap config sets for values JSON cannot
//! carry as such, and the [`Widen`] flags recording what a column's values
//! needed beyond its narrow schema.
//!
//! A leaf module (it depends on nothing else in the crate), so that
//! [`crate::types`] (schemas), [`crate::encode`] (values) and
//! [`crate::config`] can all use them without depending on each other.

/// What becomes of a value JSON (or RFC 3339) cannot carry as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// A JSON string with PostgreSQL's spelling, which PostgreSQL reads
    /// back exactly (`"NaN"`, `"Infinity"`, `"10000-01-01"`, `"0044-03-15 BC"`,
    /// `"infinity"`); for numbers the schema then allows a string. The
    /// default: nothing lost.
    #[default]
    String,
    /// `null`, counted and reported in the log (the peers' behaviour).
    Null,
    /// Fail the stream with an error naming the column.
    Error,
}

/// What NaN, Infinity and -Infinity (float and numeric) become.
pub type SpecialNumbers = Policy;

/// What dates and timestamps outside RFC 3339 (year > 9999, BC,
/// `infinity`, `-infinity`) become.
pub type OutOfRange = Policy;

/// How bytea is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteaEncoding {
    /// Lower-case hex digits, no `\x` (`contentEncoding: base16`).
    #[default]
    Hex,
    /// Standard base64 with padding (`contentEncoding: base64`).
    Base64,
}

impl ByteaEncoding {
    /// The JSON Schema `contentEncoding` value.
    pub fn content_encoding(self) -> &'static str {
        match self {
            ByteaEncoding::Hex => "base16",
            ByteaEncoding::Base64 => "base64",
        }
    }
}

/// The value policies, from the tap config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueOptions {
    /// NaN and ±Infinity.
    pub special_numbers: SpecialNumbers,
    /// Dates outside RFC 3339.
    pub out_of_range: OutOfRange,
    /// bytea.
    pub bytea: ByteaEncoding,
    /// numeric as a JSON string (`format: x-singer.decimal`) instead of a number.
    pub decimal_as_string: bool,
    /// Append `+00:00` to `timestamp without time zone` values (RFC 3339
    /// wants an offset; PostgreSQL ignores it when reading a `timestamp`).
    pub naive_timestamp_offset: bool,
}

impl Default for ValueOptions {
    fn default() -> Self {
        ValueOptions {
            special_numbers: SpecialNumbers::String,
            out_of_range: OutOfRange::String,
            bytea: ByteaEncoding::Hex,
            decimal_as_string: false,
            naive_timestamp_offset: true,
        }
    }
}

/// What a column's values have needed beyond the column's narrow schema
/// (bit flags; see `types::column_schema`). The narrow schema is what every
/// common Singer target and validator takes natively; a value that does
/// not fit it (NaN in a `number`, `infinity` under `format: date`, …)
/// sets a flag, and the stream's SCHEMA is sent again, widened, before the
/// first record holding such a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Widen(u8);

impl Widen {
    /// Nothing beyond the narrow schema.
    pub const NONE: Widen = Widen(0);
    /// A NaN/±Infinity written as a string: `number` also allows `string`.
    pub const SPECIAL_NUMBER: Widen = Widen(1);
    /// A date or timestamp RFC 3339 cannot carry (year > 9999, BC,
    /// `infinity`), written in PostgreSQL's spelling: the `format` is
    /// dropped.
    pub const NO_FORMAT: Widen = Widen(2);
    /// An array of more than one dimension: items may be arrays.
    pub const NESTED_ARRAY: Widen = Widen(4);
    /// A json/jsonb value that is the JSON literal `null`: from then on the
    /// column's values are JSON text in strings (`contentMediaType:
    /// application/json`), so `"null"` (JSON null) differs from `null`
    /// (SQL NULL).
    pub const JSON_TEXT: Widen = Widen(8);

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: Widen) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of flags.
    pub fn union(self, other: Widen) -> Widen {
        Widen(self.0 | other.0)
    }

    /// The flags as bits (for an atomic store).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The flags of [`Widen::bits`].
    pub fn from_bits(bits: u8) -> Widen {
        Widen(bits)
    }
}
