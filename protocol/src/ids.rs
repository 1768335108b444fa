//! Identifiers of the marketplace's entities and the skill names providers offer.
//!
//! Principals (customers and providers) share one numeric id space: the wallet of
//! principal `n` is `WalletId(n)`. `WalletId(0)` is reserved for the platform.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "-{}"), self.0)
            }
        }
    };
}

numeric_id!(
    /// A wallet; principal `n` owns `WalletId(n)`, the platform owns `WalletId(0)`.
    WalletId,
    "wallet"
);
numeric_id!(
    /// A provider (plumber, electrician, ...).
    ProviderId,
    "provider"
);
numeric_id!(
    /// A customer.
    CustomerId,
    "customer"
);
numeric_id!(
    /// A job: one customer's request for one skill at one place.
    JobId,
    "job"
);

impl WalletId {
    /// The platform's own wallet, which receives fees.
    pub const PLATFORM: WalletId = WalletId(0);
}

impl From<CustomerId> for WalletId {
    fn from(id: CustomerId) -> Self {
        WalletId(id.0)
    }
}

impl From<ProviderId> for WalletId {
    fn from(id: ProviderId) -> Self {
        WalletId(id.0)
    }
}

/// Longest skill name accepted, in bytes: names are short labels, not text.
pub const SKILL_BYTES_MAX: usize = 32;

/// A skill name: 1 to [`SKILL_BYTES_MAX`] bytes of lowercase ASCII letters, digits, `-` or `_`.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Skill(#[schemars(pattern(r"^[a-z0-9_-]{1,32}$"))] String);

/// Why a skill name was refused.
///
/// The message does not repeat the name: refusals never echo what a client sent
/// as markup-capable text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid skill: use 1 to {SKILL_BYTES_MAX} bytes of a-z, 0-9, '-' or '_'")]
pub struct InvalidSkill {
    /// The refused name (its first characters), for the node's own use.
    pub name: String,
}

impl Skill {
    /// Validates and wraps a skill name.
    pub fn new(name: &str) -> Result<Skill, InvalidSkill> {
        let valid = !name.is_empty()
            && name.len() <= SKILL_BYTES_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Skill(name.to_owned()))
        } else {
            Err(InvalidSkill {
                name: name.chars().take(SKILL_BYTES_MAX * 2).collect(),
            })
        }
    }

    /// The skill's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Skill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skill_names_are_validated() {
        assert!(Skill::new("plumber").is_ok());
        assert!(Skill::new("hvac-2").is_ok());
        assert!(Skill::new("").is_err());
        assert!(Skill::new("Plumber").is_err());
        assert!(Skill::new("a b").is_err());
        assert!(Skill::new(&"x".repeat(SKILL_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn wallets_follow_principal_ids() {
        assert_eq!(WalletId::from(CustomerId(7)), WalletId(7));
        assert_eq!(WalletId::from(ProviderId(9)), WalletId(9));
        assert_eq!(WalletId::PLATFORM.to_string(), "wallet-0");
    }
}
