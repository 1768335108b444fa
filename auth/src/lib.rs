//! Bearer tokens are JSON Web Tokens (RFC 7519), verified with `jsonwebtoken`:
//!
//! - **built-in**: HS256 with the node's secret, issued by `fixit token issue`
//!   (`iss` and `aud` both [`BUILTIN_ISSUER`], key id [`BUILTIN_KID`]);
//! - **external**: an identity provider's public keys (EdDSA, ES256, RS256 …) from
//!   a JWKS file, chosen by the token's `kid`, so keys rotate by adding the new
//!   key beside the old and removing the old later; `iss` and `aud` as configured,
//!   role and subject read from configured claims.
//!
//! Every token must carry `exp`; `nbf` is honoured; both with a small leeway.
//! A token's algorithm must be its key's: `alg: none`, an HS256 token naming an
//! external key (signed with the public key as an HMAC secret) and unknown key
//! ids are refused. Revocation ([`Denylist`]): a token id (`jti`), or every
//! token of a principal issued before a time.

use fixit_protocol::api::ApiError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub use fixit_protocol::ids::SUBJECT_MAX;
pub use fixit_protocol::principal::{Principal, Role};

pub use fixit_protocol::wire::TOKEN_BYTES_MAX;
const SECRET_BYTES: usize = 32;

/// `iss` and `aud` of the tokens a node issues itself.
pub const BUILTIN_ISSUER: &str = "fixit-edge";

/// `kid` of the tokens a node issues itself.
pub const BUILTIN_KID: &str = "fixit-hs256";

/// Clock leeway on `exp` and `nbf` unless configured, in seconds.
pub const LEEWAY_S_DEFAULT: u64 = 30;

/// Claim holding the role (`customer`, `provider`, `admin`) in built-in tokens.
const ROLE_CLAIM: &str = "role";

/// Claim holding the subject id in built-in tokens.
const SUBJECT_CLAIM: &str = "sub";

/// Revoked principals and token ids kept at most (an admin's list, not a
/// client's): past it, a denial is refused.
pub const DENIED_MAX: usize = 100_000;

/// The secret could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("token secret {path}: {reason}")]
pub struct SecretError {
    path: String,
    reason: String,
}

/// An external identity provider's key set could not be used.
#[derive(Debug, thiserror::Error)]
#[error("JWKS {path}: {reason}")]
pub struct JwksError {
    path: String,
    reason: String,
}

/// An issuer of tokens — an external identity provider, or the node itself —:
/// its keys by `kid` and what its tokens must say.
pub struct External {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    issuer: String,
    audience: String,
    role_claim: String,
    subject_claim: String,
}

impl External {
    /// The node itself: its HS256 secret under [`BUILTIN_KID`].
    fn own(secret: &[u8]) -> External {
        let key = (DecodingKey::from_secret(secret), Algorithm::HS256);
        External {
            keys: HashMap::from([(BUILTIN_KID.to_owned(), key)]),
            issuer: BUILTIN_ISSUER.to_owned(),
            audience: BUILTIN_ISSUER.to_owned(),
            role_claim: ROLE_CLAIM.to_owned(),
            subject_claim: SUBJECT_CLAIM.to_owned(),
        }
    }

    /// Reads the JWKS file at `path`: every key needs a `kid` and an `alg`, and
    /// must be a public key (RSA, EC or OKP; a symmetric `oct` key is refused).
    pub fn load(
        path: &Path,
        issuer: &str,
        audience: &str,
        role_claim: &str,
        subject_claim: &str,
    ) -> Result<External, JwksError> {
        let fail = |reason: String| JwksError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| fail("a key without kid".into()))?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|alg| alg.to_string().parse::<Algorithm>().ok())
                .ok_or_else(|| fail(format!("key {kid}: no supported alg")))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(fail(format!("key {kid}: symmetric keys are not accepted")));
            }
            if kid == BUILTIN_KID {
                return Err(fail(format!("key id {BUILTIN_KID} is the node's own")));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| fail(format!("key {kid}: {e}")))?;
            if keys.insert(kid.clone(), (key, alg)).is_some() {
                return Err(fail(format!("key id {kid} twice")));
            }
        }
        if keys.is_empty() {
            return Err(fail("no keys".into()));
        }
        Ok(External {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            role_claim: role_claim.to_owned(),
            subject_claim: subject_claim.to_owned(),
        })
    }
}

/// Revoked tokens, shared by every clone of a [`TokenKey`].
#[derive(Default)]
pub struct Denylist {
    state: RwLock<Denied>,
}

#[derive(Default)]
struct Denied {
    /// Token ids, with when the denial may be forgotten (the longest a token
    /// lives past its denial), Unix seconds.
    tokens: HashMap<String, u64>,
    /// Principals whose tokens issued before the time are refused.
    issued_before: HashMap<Principal, u64>,
}

/// A revocation, as stored and sent to every node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Denial {
    /// One token by its `jti`, until `forget_after_s` (when it has surely expired).
    Token {
        /// The token id.
        jti: String,
        /// Unix seconds after which the entry may be dropped.
        forget_after_s: u64,
    },
    /// Every token of `principal` issued (`iat`) before `before_s`.
    IssuedBefore {
        /// Whose tokens.
        principal: Principal,
        /// Unix seconds.
        before_s: u64,
    },
}

impl Denylist {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Denied> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a denial (idempotent); `false` if the list is full.
    pub fn apply(&self, denial: &Denial, now_s: u64) -> bool {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.tokens.retain(|_, forget| *forget > now_s);
        if state.tokens.len() + state.issued_before.len() >= DENIED_MAX {
            return false;
        }
        match denial {
            Denial::Token {
                jti,
                forget_after_s,
            } => {
                let entry = state.tokens.entry(jti.clone()).or_default();
                *entry = (*entry).max(*forget_after_s);
            }
            Denial::IssuedBefore {
                principal,
                before_s,
            } => {
                let entry = state.issued_before.entry(*principal).or_default();
                *entry = (*entry).max(*before_s);
            }
        }
        true
    }

    fn refuses(&self, jti: Option<&str>, principal: Principal, issued_s: u64) -> bool {
        let state = self.read();
        jti.is_some_and(|jti| state.tokens.contains_key(jti))
            || state
                .issued_before
                .get(&principal)
                .is_some_and(|before| issued_s < *before)
    }
}

/// The node's token keys: its own secret (HS256, to issue and verify), an
/// optional external identity provider, and the shared denylist.
#[derive(Clone)]
pub struct TokenKey {
    signing: Arc<EncodingKey>,
    own: Arc<External>,
    external: Option<Arc<External>>,
    denied: Arc<Denylist>,
    leeway_s: u64,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// The claims of a built-in token.
#[derive(serde::Serialize)]
struct OwnClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: String,
    role: String,
    iat: u64,
    exp: u64,
    jti: String,
}

impl TokenKey {
    /// A key from raw secret bytes.
    pub fn from_secret(secret: [u8; SECRET_BYTES]) -> TokenKey {
        TokenKey {
            signing: Arc::new(EncodingKey::from_secret(&secret)),
            own: Arc::new(External::own(&secret)),
            external: None,
            denied: Arc::default(),
            leeway_s: LEEWAY_S_DEFAULT,
        }
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
            return Ok(TokenKey::from_secret(secret));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let bytes = from_hex(text.trim()).ok_or_else(|| fail("not hex".into()))?;
        let secret = bytes
            .try_into()
            .map_err(|_| fail(format!("must be {SECRET_BYTES} bytes of hex")))?;
        Ok(TokenKey::from_secret(secret))
    }

    /// Also accepts tokens of `external`.
    pub fn with_external(mut self, external: External) -> TokenKey {
        self.external = Some(Arc::new(external));
        self
    }

    /// With `leeway_s` seconds of clock leeway on `exp` and `nbf`.
    pub fn with_leeway(mut self, leeway_s: u64) -> TokenKey {
        self.leeway_s = leeway_s;
        self
    }

    /// The denylist every clone of this key consults.
    pub fn denylist(&self) -> &Denylist {
        &self.denied
    }

    /// A token for `principal` valid until `expires_at_s` (Unix seconds): a JWT
    /// signed HS256 with the node's secret, with a random `jti`.
    pub fn issue(&self, principal: Principal, expires_at_s: u64) -> String {
        let mut id = [0u8; 16];
        // Without OS randomness the id is still unique enough per process: the
        // subject, expiry and time are in it.
        if getrandom::fill(&mut id).is_err() {
            id[..8].copy_from_slice(&now_s().to_be_bytes());
            id[8..].copy_from_slice(&principal.sub.to_be_bytes());
        }
        let claims = OwnClaims {
            iss: BUILTIN_ISSUER,
            aud: BUILTIN_ISSUER,
            sub: principal.sub.to_string(),
            role: principal.role.to_string(),
            iat: now_s(),
            exp: expires_at_s,
            jti: to_hex(&id),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(BUILTIN_KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.signing)
            .expect("HS256 signing with a 32-byte secret cannot fail")
    }

    /// The principal of a valid token: signed by a known key with that key's
    /// algorithm, from the expected issuer for this node's audience, not expired
    /// (`exp`, required), already valid (`nbf`), and not revoked.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Principal, ApiError> {
        let refuse = |why: &str| ApiError::Unauthorized(why.to_owned());
        if token.len() > TOKEN_BYTES_MAX {
            return Err(refuse("token too long"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| refuse("malformed token or unsupported algorithm"))?;
        // No kid: the node's own (tokens of earlier builds named none).
        let (issuer, kid) = match header.kid.as_deref() {
            None => (&*self.own, BUILTIN_KID),
            Some(BUILTIN_KID) => (&*self.own, BUILTIN_KID),
            Some(kid) => (
                self.external
                    .as_deref()
                    .ok_or_else(|| refuse("unknown key id"))?,
                kid,
            ),
        };
        let (key, alg) = issuer
            .keys
            .get(kid)
            .ok_or_else(|| refuse("unknown key id"))?;
        let mut validation = Validation::new(*alg);
        // Time is checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&[&issuer.audience]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|error| {
                refuse(match error.kind() {
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::InvalidAlgorithm => "algorithm not allowed for this key",
                    ErrorKind::InvalidIssuer => "wrong issuer",
                    ErrorKind::InvalidAudience => "wrong audience",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "missing a required claim (exp, iss, aud)"
                    }
                    _ => "malformed token",
                })
            })?
            .claims;
        let seconds = |name: &str| claims.get(name).and_then(Value::as_u64);
        let expires = seconds("exp").ok_or_else(|| refuse("malformed exp"))?;
        if expires.saturating_add(self.leeway_s) <= now_s {
            return Err(refuse("token expired"));
        }
        if claims.contains_key("nbf") {
            let not_before = seconds("nbf").ok_or_else(|| refuse("malformed nbf"))?;
            if not_before > now_s.saturating_add(self.leeway_s) {
                return Err(refuse("token not yet valid"));
            }
        }
        let role: Role = claims
            .get(&issuer.role_claim)
            .and_then(Value::as_str)
            .and_then(|role| role.parse().ok())
            .ok_or_else(|| refuse("no valid role claim"))?;
        let sub = match claims.get(&issuer.subject_claim) {
            Some(Value::String(text)) => text.parse().ok(),
            Some(number) => number.as_u64(),
            None => None,
        }
        .filter(|sub| *sub <= SUBJECT_MAX)
        .ok_or_else(|| refuse("no valid subject claim"))?;
        let principal = Principal { role, sub };
        let jti = claims.get("jti").and_then(Value::as_str);
        let issued = seconds("iat").unwrap_or(0);
        if self.denied.refuses(jti, principal, issued) {
            return Err(refuse("token revoked"));
        }
        Ok(principal)
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

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn alice() -> Principal {
        Principal {
            role: Role::Customer,
            sub: 42,
        }
    }

    fn unauthorized(result: Result<Principal, ApiError>) -> String {
        match result {
            Err(ApiError::Unauthorized(why)) => why,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[test]
    fn own_tokens_verify_and_forgery_expiry_and_garbage_are_refused() {
        let key = TokenKey::from_secret([7; SECRET_BYTES]).with_leeway(0);
        let other = TokenKey::from_secret([8; SECRET_BYTES]);
        let token = key.issue(alice(), NOW + 1_000);
        assert_eq!(token.split('.').count(), 3, "a JWT");
        assert_eq!(key.verify(&token, NOW).unwrap(), alice());
        assert_eq!(
            unauthorized(key.verify(&token, NOW + 1_000)),
            "token expired"
        );
        assert_eq!(unauthorized(other.verify(&token, NOW)), "bad signature");
        // Swap the payload for an admin one, keep the signature: refused.
        let parts: Vec<&str> = token.split('.').collect();
        let admin = URL_SAFE_NO_PAD.encode(
            json!({"iss": BUILTIN_ISSUER, "aud": BUILTIN_ISSUER, "sub": "42", "role": "admin", "exp": NOW + 1_000})
                .to_string(),
        );
        let forged = format!("{}.{admin}.{}", parts[0], parts[2]);
        assert_eq!(unauthorized(key.verify(&forged, NOW)), "bad signature");
        for garbage in [
            "",
            "a.b",
            "a.b.c",
            "Bearer x",
            &"x".repeat(TOKEN_BYTES_MAX + 1),
        ] {
            unauthorized(key.verify(garbage, NOW));
        }
    }

    /// A token with `claims`, HS256 with `secret`, under `kid`.
    fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({
            "iss": BUILTIN_ISSUER, "aud": BUILTIN_ISSUER, "sub": "42", "role": "customer",
            "exp": NOW + 600,
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut claims, extra) {
            base.extend(extra);
        }
        claims
    }

    #[test]
    fn time_issuer_audience_and_algorithm_are_checked() {
        let secret = [7; SECRET_BYTES];
        let key = TokenKey::from_secret(secret).with_leeway(30);
        let ok = hs256(&secret, Some(BUILTIN_KID), &claims(json!({})));
        assert_eq!(key.verify(&ok, NOW).unwrap(), alice());
        let cases = [
            (json!({"exp": NOW - 31}), "token expired"),
            (json!({"nbf": NOW + 31}), "token not yet valid"),
            (json!({"iss": "someone-else"}), "wrong issuer"),
            (json!({"aud": "another-service"}), "wrong audience"),
            (json!({"role": "root"}), "no valid role claim"),
            (json!({"sub": "-1"}), "no valid subject claim"),
        ];
        for (extra, why) in cases {
            let token = hs256(&secret, None, &claims(extra.clone()));
            assert_eq!(unauthorized(key.verify(&token, NOW)), why, "{extra}");
        }
        // Within the leeway: still valid.
        let late = hs256(
            &secret,
            None,
            &claims(json!({"exp": NOW - 29, "nbf": NOW + 29})),
        );
        assert_eq!(key.verify(&late, NOW).unwrap(), alice());
        // No exp at all.
        let mut endless = claims(json!({}));
        endless.as_object_mut().unwrap().remove("exp");
        unauthorized(key.verify(&hs256(&secret, None, &endless), NOW));
        // alg: none, with and without a signature.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        for token in [
            format!("{none_header}.{body}."),
            format!("{none_header}.{body}.x"),
        ] {
            unauthorized(key.verify(&token, NOW));
        }
        // An unknown key id.
        let stranger = hs256(&secret, Some("someone"), &claims(json!({})));
        assert_eq!(unauthorized(key.verify(&stranger, NOW)), "unknown key id");
    }

    /// An Ed25519 key pair under `kid`: the signing key and its public JWK.
    fn ed25519(kid: &str) -> (EncodingKey, Value) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let signing = EncodingKey::from_ed_der(&pair.serialize_der());
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
        });
        (signing, jwk)
    }

    fn external_token(signing: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, signing).unwrap()
    }

    #[test]
    fn an_identity_providers_keys_verify_by_kid_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        let (old, old_jwk) = ed25519("2026-11");
        let (new, new_jwk) = ed25519("2026-12");
        let load = |keys: Vec<&Value>| {
            std::fs::write(&jwks, json!({ "keys": keys }).to_string()).unwrap();
            let external = External::load(
                &jwks,
                "https://id.example",
                "fixit-edge",
                "https://fixit/role",
                "uid",
            )
            .unwrap();
            TokenKey::from_secret([7; SECRET_BYTES]).with_external(external)
        };
        let idp_claims = json!({
            "iss": "https://id.example", "aud": "fixit-edge", "uid": 42,
            "https://fixit/role": "customer", "exp": NOW + 600,
        });
        let by_old = external_token(&old, Algorithm::EdDSA, "2026-11", &idp_claims);
        let by_new = external_token(&new, Algorithm::EdDSA, "2026-12", &idp_claims);

        let both = load(vec![&old_jwk, &new_jwk]);
        assert_eq!(both.verify(&by_old, NOW).unwrap(), alice());
        assert_eq!(both.verify(&by_new, NOW).unwrap(), alice());
        // The old key retired: its tokens are refused, the new key's still pass.
        let rotated = load(vec![&new_jwk]);
        assert_eq!(unauthorized(rotated.verify(&by_old, NOW)), "unknown key id");
        assert_eq!(rotated.verify(&by_new, NOW).unwrap(), alice());
        // A token naming the new key but signed by the old: bad signature.
        let swapped = external_token(&old, Algorithm::EdDSA, "2026-12", &idp_claims);
        assert_eq!(unauthorized(rotated.verify(&swapped, NOW)), "bad signature");
        // HS256 signed with the public key as the secret, naming the key: refused.
        let public = URL_SAFE_NO_PAD
            .decode(new_jwk["x"].as_str().unwrap())
            .unwrap();
        let confused = hs256(&public, Some("2026-12"), &idp_claims);
        assert_eq!(
            unauthorized(rotated.verify(&confused, NOW)),
            "algorithm not allowed for this key"
        );
        // The identity provider's issuer and audience are required of its tokens.
        let mut wrong = idp_claims.clone();
        wrong["aud"] = json!("other");
        let wrong = external_token(&new, Algorithm::EdDSA, "2026-12", &wrong);
        assert_eq!(unauthorized(rotated.verify(&wrong, NOW)), "wrong audience");
        // The node's own tokens still verify beside the external ones.
        let own = rotated.issue(alice(), NOW + 60);
        assert_eq!(rotated.verify(&own, NOW).unwrap(), alice());
    }

    #[test]
    fn a_jwks_with_a_symmetric_or_unnamed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        let (_, mut unnamed) = ed25519("x");
        unnamed.as_object_mut().unwrap().remove("kid");
        let oct = json!({"kty": "oct", "kid": "s", "alg": "HS256", "k": "c2VjcmV0"});
        for keys in [json!([unnamed]), json!([oct]), json!([])] {
            std::fs::write(&jwks, json!({ "keys": keys }).to_string()).unwrap();
            assert!(
                External::load(&jwks, "i", "a", "role", "sub").is_err(),
                "{keys}"
            );
        }
    }

    #[test]
    fn denied_tokens_and_principals_are_refused_on_every_clone() {
        let key = TokenKey::from_secret([7; SECRET_BYTES]);
        let clone = key.clone();
        let first = key.issue(alice(), NOW + 600);
        let second = key.issue(alice(), NOW + 600);
        let jti = |token: &str| -> String {
            let body = token.split('.').nth(1).unwrap();
            let claims: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
            claims["jti"].as_str().unwrap().to_owned()
        };
        assert_ne!(jti(&first), jti(&second), "each token has its own id");
        assert!(key.denylist().apply(
            &Denial::Token {
                jti: jti(&first),
                forget_after_s: NOW + 600,
            },
            NOW,
        ));
        assert_eq!(unauthorized(clone.verify(&first, NOW)), "token revoked");
        assert_eq!(clone.verify(&second, NOW).unwrap(), alice());
        assert!(key.denylist().apply(
            &Denial::IssuedBefore {
                principal: alice(),
                before_s: now_s() + 1,
            },
            NOW,
        ));
        assert_eq!(unauthorized(clone.verify(&second, NOW)), "token revoked");
        let bob = Principal {
            role: Role::Provider,
            sub: 42,
        };
        let bobs = key.issue(bob, NOW + 600);
        assert_eq!(clone.verify(&bobs, NOW).unwrap(), bob, "another principal");
    }

    #[test]
    fn secret_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.hex");
        let first = TokenKey::load_or_create(&path).unwrap();
        let again = TokenKey::load_or_create(&path).unwrap();
        let token = first.issue(alice(), now_s() + 60);
        assert_eq!(
            again.verify(&token, now_s()).unwrap(),
            alice(),
            "the same secret"
        );
        std::fs::write(&path, "zz").unwrap();
        assert!(TokenKey::load_or_create(&path).is_err());
    }
}
