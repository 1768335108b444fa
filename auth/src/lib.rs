//! Bearer tokens: a role, a subject id and an expiry, signed with the node's secret
//! (HMAC-SHA-256). `fixit token issue` makes them; every request presents one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fixit_protocol::api::ApiError;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::Path;

pub use fixit_protocol::principal::{Principal, Role};

pub use fixit_protocol::wire::TOKEN_BYTES_MAX;
const PREFIX: &str = "fx1.";
const SECRET_BYTES: usize = 32;

/// The secret could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("token secret {path}: {reason}")]
pub struct SecretError {
    path: String,
    reason: String,
}

/// The node's token-signing key.
#[derive(Clone)]
pub struct TokenKey {
    secret: [u8; SECRET_BYTES],
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl TokenKey {
    /// A key from raw secret bytes.
    pub fn from_secret(secret: [u8; SECRET_BYTES]) -> TokenKey {
        TokenKey { secret }
    }

    /// Reads the hex secret at `path`, making a random one (mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<TokenKey, SecretError> {
        let fail = |reason: String| SecretError {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            let mut secret = [0u8; SECRET_BYTES];
            getrandom::fill(&mut secret).map_err(|e| fail(e.to_string()))?;
            fixit_protocol::files::write_new(path, &to_hex(&secret), true)
                .map_err(|e| fail(e.to_string()))?;
            return Ok(TokenKey { secret });
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let bytes = from_hex(text.trim()).ok_or_else(|| fail("not hex".into()))?;
        let secret = bytes
            .try_into()
            .map_err(|_| fail(format!("must be {SECRET_BYTES} bytes of hex")))?;
        Ok(TokenKey { secret })
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(PREFIX.as_bytes());
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `principal` valid until `expires_at_s` (Unix seconds).
    pub fn issue(&self, principal: Principal, expires_at_s: u64) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(
            "{}:{}:{expires_at_s}",
            principal.role, principal.sub
        ));
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{PREFIX}{payload}.{signature}")
    }

    /// The principal of a valid, unexpired token signed with this key.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Principal, ApiError> {
        let refuse = |why: &str| ApiError::Unauthorized(why.to_owned());
        if token.len() > TOKEN_BYTES_MAX {
            return Err(refuse("token too long"));
        }
        let rest = token
            .strip_prefix(PREFIX)
            .ok_or_else(|| refuse("not a fixit token"))?;
        let (payload, signature) = rest
            .split_once('.')
            .ok_or_else(|| refuse("malformed token"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| refuse("malformed signature"))?;
        self.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| refuse("bad signature"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| refuse("malformed payload"))?;
        let mut parts = payload.split(':');
        let (Some(role), Some(sub), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("malformed payload"));
        };
        let role: Role = role.parse().map_err(|_| refuse("unknown role"))?;
        let sub: u64 = sub.parse().map_err(|_| refuse("malformed subject"))?;
        let expires: u64 = expires.parse().map_err(|_| refuse("malformed expiry"))?;
        if expires <= now_s {
            return Err(refuse("token expired"));
        }
        Ok(Principal { role, sub })
    }
}

/// Seconds since the Unix epoch now.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_refuse_forgery_expiry_and_garbage() {
        let key = TokenKey::from_secret([7; SECRET_BYTES]);
        let other = TokenKey::from_secret([8; SECRET_BYTES]);
        let alice = Principal {
            role: Role::Customer,
            sub: 42,
        };
        let token = key.issue(alice, 1_000);
        assert_eq!(key.verify(&token, 999).unwrap(), alice);
        assert!(
            matches!(key.verify(&token, 1_000), Err(ApiError::Unauthorized(_))),
            "expired"
        );
        assert!(other.verify(&token, 0).is_err(), "another node's key");
        // Swap the payload for an admin one, keep the signature: refused.
        let admin_payload = URL_SAFE_NO_PAD.encode("admin:42:1000");
        let signature = token.rsplit('.').next().unwrap();
        assert!(key
            .verify(&format!("{PREFIX}{admin_payload}.{signature}"), 0)
            .is_err());
        for garbage in [
            "",
            "fx1.",
            "fx1.a.b",
            "Bearer x",
            &"x".repeat(TOKEN_BYTES_MAX + 1),
        ] {
            assert!(key.verify(garbage, 0).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn secret_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.hex");
        let first = TokenKey::load_or_create(&path).unwrap();
        let again = TokenKey::load_or_create(&path).unwrap();
        assert_eq!(first.secret, again.secret);
        std::fs::write(&path, "zz").unwrap();
        assert!(TokenKey::load_or_create(&path).is_err());
    }
}
