//! Who is asking: a role and a subject id, as a verified token says.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Books jobs, pays from its own wallet.
    Customer,
    /// Takes offers, works jobs, is paid into its own wallet.
    Provider,
    /// Operates the node: deposits, reads anything.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Customer => "customer",
            Role::Provider => "provider",
            Role::Admin => "admin",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "customer" => Ok(Role::Customer),
            "provider" => Ok(Role::Provider),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: use customer, provider or admin"
            )),
        }
    }
}

/// Who is asking: a role and a subject id (the customer, provider or operator id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The role.
    pub role: Role,
    /// The subject id.
    pub sub: u64,
}
