//! Printer ids: the one name a printer has on the wire, in topics, in URLs and in the store.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A printer id: 1 to 64 characters of `a-z`, `0-9` and `-`.
///
/// Invariant: a `PrinterId` value is always valid, so it can be put into an MQTT
/// topic or a URL path without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrinterId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid printer id {0:?}: use 1 to 64 characters of a-z, 0-9 and '-'")]
pub struct InvalidPrinterId(pub String);

impl PrinterId {
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidPrinterId> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidPrinterId(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PrinterId {
    type Error = InvalidPrinterId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<PrinterId> for String {
    fn from(p: PrinterId) -> String {
        p.0
    }
}

impl fmt::Display for PrinterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PrinterId {
    type Err = InvalidPrinterId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet_only() {
        assert!(PrinterId::new("mk4-07").is_ok());
        assert!(PrinterId::new("a".repeat(64)).is_ok());
        for bad in ["", "MK4", "a/b", "a+b", "a#", "ä", "a b"] {
            assert!(PrinterId::new(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(PrinterId::new("a".repeat(65)).is_err());
    }

    #[test]
    fn deserialising_validates() {
        let bad: Result<PrinterId, _> = serde_json::from_str("\"x/#\"");
        assert!(bad.is_err());
    }
}
