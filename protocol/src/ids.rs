//! Identifiers of the marketplace's entities and the skill names providers offer.
//!
//! Wallets belong to a (role, subject) principal: customer `n` owns
//! `WalletId(n)`, provider `n` owns `WalletId(PROVIDER_WALLETS + n)`, and the
//! platform's fee wallet is [`WalletId::PLATFORM`], above both. Subjects are at
//! most [`SUBJECT_MAX`], so the three never meet and no subject is special.

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
    /// A wallet: a customer's, a provider's or the platform's (see the module).
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

/// Whether `text` is 1 to `max` printable ASCII bytes without spaces (keys and
/// token ids).
pub fn is_printable_ascii(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Largest subject id of a customer or provider (2^62 − 1).
pub const SUBJECT_MAX: u64 = (1 << 62) - 1;

/// First provider wallet: provider `n` owns `WalletId(PROVIDER_WALLETS + n)`.
pub const PROVIDER_WALLETS: u64 = 1 << 62;

/// Who owns a wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalletOwner {
    /// A customer.
    Customer(CustomerId),
    /// A provider.
    Provider(ProviderId),
    /// The platform (fees).
    Platform,
    /// No one: an id above the platform's.
    Nobody,
}

impl WalletId {
    /// The platform's own wallet, which receives fees.
    pub const PLATFORM: WalletId = WalletId(1 << 63);

    /// The wallet of `principal`, if it has one (an admin has none).
    pub fn of(principal: &crate::principal::Principal) -> Option<WalletId> {
        use crate::principal::Role;
        match principal.role {
            Role::Customer => Some(CustomerId(principal.sub).into()),
            Role::Provider => Some(ProviderId(principal.sub).into()),
            Role::Admin => None,
        }
    }

    /// Who owns this wallet.
    pub fn owner(self) -> WalletOwner {
        match self.0 {
            id if id <= SUBJECT_MAX => WalletOwner::Customer(CustomerId(id)),
            id if id < WalletId::PLATFORM.0 => {
                WalletOwner::Provider(ProviderId(id - PROVIDER_WALLETS))
            }
            id if id == WalletId::PLATFORM.0 => WalletOwner::Platform,
            _ => WalletOwner::Nobody,
        }
    }
}

impl From<CustomerId> for WalletId {
    fn from(id: CustomerId) -> Self {
        WalletId(id.0)
    }
}

impl From<ProviderId> for WalletId {
    /// Provider ids above [`SUBJECT_MAX`] are refused before they reach here; one
    /// that got here anyway lands among the provider wallets, never on the
    /// platform's or a customer's.
    fn from(id: ProviderId) -> Self {
        WalletId(PROVIDER_WALLETS | (id.0 & SUBJECT_MAX))
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
    fn wallets_belong_to_a_role_and_subject() {
        use crate::principal::{Principal, Role};
        assert_eq!(WalletId::from(CustomerId(7)), WalletId(7));
        assert_eq!(
            WalletId::from(ProviderId(7)),
            WalletId(PROVIDER_WALLETS + 7)
        );
        assert_ne!(WalletId::from(CustomerId(7)), WalletId::from(ProviderId(7)));
        for sub in [0, 1, SUBJECT_MAX] {
            for role in [Role::Customer, Role::Provider] {
                let wallet = WalletId::of(&Principal { role, sub }).unwrap();
                assert_ne!(wallet, WalletId::PLATFORM, "{role} {sub}");
                let owner = wallet.owner();
                match role {
                    Role::Customer => assert_eq!(owner, WalletOwner::Customer(CustomerId(sub))),
                    _ => assert_eq!(owner, WalletOwner::Provider(ProviderId(sub))),
                }
            }
        }
        let admin = Principal {
            role: Role::Admin,
            sub: 0,
        };
        assert_eq!(WalletId::of(&admin), None);
        assert_eq!(WalletId::PLATFORM.owner(), WalletOwner::Platform);
        assert_eq!(WalletId(u64::MAX).owner(), WalletOwner::Nobody);
        assert_ne!(WalletId::from(ProviderId(u64::MAX)), WalletId::PLATFORM);
    }
}
