//! Identifier quoting: the one place in the project where a name from a user,
//! a catalog or a stream becomes SQL text. Values are bound as parameters,
//! except in replication commands (`START_REPLICATION … ("opt" 'value')`),
//! which the server parses with its own small grammar and which cannot take
//! parameters: [`quote_literal`] is for those only.
//!
//! Invariant: the output of [`quote_ident`] is a single, valid, double-quoted
//! identifier whatever the input (quotes doubled), so no input can end the
//! identifier early. PostgreSQL cannot store a NUL byte in a name, so a name
//! containing one is rejected rather than silently altered.

use std::fmt;

use crate::Error;

/// Quotes `name` as a PostgreSQL identifier: `a"b` → `"a""b"`. Case, spaces
/// and reserved words are kept as they are.
///
/// # Panics
/// Never; a NUL byte is reported by [`try_quote_ident`]. This function
/// replaces nothing and is meant for names that come from the server's own
/// catalogue (which cannot contain NUL).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_quoted(&mut out, name);
    out
}

/// Like [`quote_ident`], but rejects a name containing a NUL byte, which no
/// PostgreSQL identifier can hold. Use it for names from user input.
pub fn try_quote_ident(name: &str) -> Result<String, Error> {
    if name.contains('\0') {
        return Err(Error::config(format!(
            "identifier {name:?} contains a NUL byte, which PostgreSQL names cannot hold"
        )));
    }
    Ok(quote_ident(name))
}

/// Quotes `value` as a string literal for a replication command:
/// `it's` → `'it''s'`. Quotes are doubled; backslashes are kept as they are,
/// which is right for the replication grammar (it has no backslash escapes)
/// and for SQL with `standard_conforming_strings = on` (the default since
/// PostgreSQL 9.1). A value containing a NUL byte is rejected: no PostgreSQL
/// string can hold one.
pub fn quote_literal(value: &str) -> Result<String, Error> {
    if value.contains('\0') {
        return Err(Error::config(format!(
            "value {value:?} contains a NUL byte, which PostgreSQL strings cannot hold"
        )));
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    Ok(out)
}

fn push_quoted(out: &mut String, name: &str) {
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// A schema-qualified name, displayed as `"schema"."name"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    /// The schema (namespace).
    pub schema: String,
    /// The object's name within the schema.
    pub name: String,
}

impl QualifiedName {
    /// A name `schema.name`.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.schema.len() + self.name.len() + 5);
        push_quoted(&mut s, &self.schema);
        s.push('.');
        push_quoted(&mut s, &self.name);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_doubles_quotes() {
        assert_eq!(quote_ident("orders"), r#""orders""#);
        assert_eq!(quote_ident("Mixed Case"), r#""Mixed Case""#);
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_ident(r#"""#), r#""""""#);
        assert_eq!(quote_ident("select"), r#""select""#);
        assert_eq!(quote_ident("ünï"), "\"ünï\"");
    }

    #[test]
    fn rejects_nul() {
        assert!(try_quote_ident("a\0b").is_err());
        assert_eq!(try_quote_ident("ok").unwrap(), r#""ok""#);
    }

    #[test]
    fn literals_double_quotes_only() {
        assert_eq!(quote_literal("2").unwrap(), "'2'");
        assert_eq!(quote_literal("").unwrap(), "''");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal("'").unwrap(), "''''");
        assert_eq!(
            quote_literal("a'); DROP x; --").unwrap(),
            "'a''); DROP x; --'"
        );
        assert_eq!(quote_literal(r"back\slash").unwrap(), r"'back\slash'");
        assert_eq!(
            quote_literal("public.t,\"My Table\"").unwrap(),
            "'public.t,\"My Table\"'"
        );
        assert_eq!(quote_literal("ünï").unwrap(), "'ünï'");
        assert!(quote_literal("a\0b").is_err());
    }

    #[test]
    fn qualified() {
        assert_eq!(
            QualifiedName::new("my schema", r#"t"x"#).to_string(),
            r#""my schema"."t""x""#
        );
    }
}
