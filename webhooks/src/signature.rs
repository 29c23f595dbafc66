//! Standard Webhooks v1: `webhook-signature` is `v1,<base64 HMAC-SHA256>`
//! of `"<webhook-id>.<webhook-timestamp>.<body>"`, keyed by the base64 part
//! of the `whsec_` secret. Several signatures (a secret rotation's grace
//! period) are separated by spaces; a receiver accepts any that verifies.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

fn key(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    // Our secrets always decode; a foreign one that does not is used as is.
    STANDARD.decode(encoded).unwrap_or_else(|_| encoded.as_bytes().to_vec())
}

/// One `v1,…` signature.
pub fn sign(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret)).expect("HMAC takes keys of any length");
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header for `secrets`, space-separated.
pub fn header(secrets: &[&str], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, message_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True if any signature in `header` is `secret`'s (compared in constant time).
pub fn verify(secret: &str, message_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = sign(secret, message_id, timestamp, body);
    header
        .split(' ')
        .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test vectors.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_secret_in_a_rotation_signs_and_verifies() {
        let (old, new) = (new_secret().unwrap(), new_secret().unwrap());
        assert!(old.starts_with("whsec_") && STANDARD.decode(&old[6..]).unwrap().len() == 32);
        let h = header(&[&new, &old], "msg_1", 1_700_000_000, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify(&new, "msg_1", 1_700_000_000, b"{}", &h));
        assert!(verify(&old, "msg_1", 1_700_000_000, b"{}", &h));
        assert!(
            !verify(&old, "msg_1", 1_700_000_001, b"{}", &h),
            "the timestamp is signed"
        );
        assert!(!verify(&old, "msg_2", 1_700_000_000, b"{}", &h), "the id is signed");
        assert!(!verify(&old, "msg_1", 1_700_000_000, b"{ }", &h), "the body is signed");
    }
}
