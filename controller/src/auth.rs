//! Who may do what: roles, API tokens (stored only as sha256), and the principal of a request.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Roles, from most to least powerful. DESIGN §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including raw G-code and enrolling printers.
    Admin,
    /// Runs the floor: jobs, pause/resume/cancel, bed clear.
    Operator,
    /// Reads everything.
    Viewer,
    /// The shop site: orders and quotes only.
    Shop,
    /// One printer's agent: its own files only.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Shop => "shop",
            Role::Agent => "agent",
        }
    }

    /// True if this role includes everything `needed` may do on the farm floor.
    pub fn covers(self, needed: Role) -> bool {
        let rank = |r: Role| match r {
            Role::Admin => 3,
            Role::Operator => 2,
            Role::Viewer => 1,
            Role::Shop | Role::Agent => 0,
        };
        self == needed || (rank(needed) > 0 && rank(self) >= rank(needed))
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "shop" => Ok(Role::Shop),
            "agent" => Ok(Role::Agent),
            _ => Err(format!(
                "unknown role {s:?}; use admin, operator, viewer, shop or agent"
            )),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub role: Role,
    /// For agents: their printer.
    pub printer: Option<String>,
    pub name: String,
}

/// A new random token with a recognisable prefix (so leaked ones can be found by scanners).
pub fn new_token() -> String {
    format!("farm_{}", random_hex(24))
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

/// How a token is stored and looked up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_cover() {
        assert!(Role::Admin.covers(Role::Operator));
        assert!(Role::Operator.covers(Role::Viewer));
        assert!(!Role::Viewer.covers(Role::Operator));
        assert!(!Role::Shop.covers(Role::Viewer));
        assert!(!Role::Admin.covers(Role::Agent));
        assert!(Role::Agent.covers(Role::Agent));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert_ne!(a, new_token());
        assert!(a.starts_with("farm_") && a.len() == 53);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
