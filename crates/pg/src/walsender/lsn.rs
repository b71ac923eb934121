//! [`Lsn`]: a position in the write-ahead log, as the server prints it
//! (`16/B374D848`) and as the replication protocol sends it (a `u64`).
//!
//! Invariant: `Display` and `FromStr` round-trip every value, and the order
//! of `Lsn`s is the order of positions in the WAL.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A WAL position (a log sequence number). `Lsn(0)` is the server's
/// `InvalidXLogRecPtr` ("no position"); it is never a real position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`: no position (`InvalidXLogRecPtr`).
    pub const INVALID: Lsn = Lsn(0);

    /// The position as the integer the protocol and `pg_lsn - '0/0'` use.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether this is `0/0`.
    pub fn is_invalid(self) -> bool {
        self.0 == 0
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Lsn {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> u64 {
        lsn.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses the server's text form, `hi/lo` in hexadecimal (either case,
    /// 1 to 8 digits each), e.g. `16/B374D848`.
    fn from_str(s: &str) -> Result<Lsn, Error> {
        let half = |part: &str| {
            (!part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
        };
        s.split_once('/')
            .and_then(|(hi, lo)| Some((half(hi)? << 32) | half(lo)?))
            .map(Lsn)
            .ok_or_else(|| {
                Error::config(format!(
                    "{s:?} is not an LSN: expected two hexadecimal numbers separated by '/', \
                     e.g. 16/B374D848"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for (text, value) in [
            ("0/0", 0u64),
            ("0/1", 1),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ] {
            assert_eq!(Lsn(value).to_string(), text);
            assert_eq!(text.parse::<Lsn>().unwrap(), Lsn(value));
        }
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("0/00000001".parse::<Lsn>().unwrap(), Lsn(1));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "1/2/3",
            "G/0",
            "+1/0",
            "1 /0",
            "100000000/0",
        ] {
            let e = bad.parse::<Lsn>().unwrap_err();
            assert!(e.to_string().contains("is not an LSN"), "{bad}: {e}");
        }
    }

    #[test]
    fn order_is_wal_order() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
        assert!(Lsn::INVALID < a);
        assert_eq!(u64::from(b), 1 << 32);
    }
}
