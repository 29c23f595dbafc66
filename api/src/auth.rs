//! Admin authentication: `Authorization: Bearer <admin token>` on every
//! management endpoint, compared in constant time. An API key never opens
//! an admin endpoint (it is not the token).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::Path;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The admin token. Never printed: `Debug` shows a placeholder.
#[derive(Clone)]
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl AdminToken {
    pub fn new(token: String) -> AdminToken {
        AdminToken(token)
    }

    /// Constant-time, and length-blind: both sides are hashed first.
    pub fn matches(&self, presented: &str) -> bool {
        Sha256::digest(self.0.as_bytes())
            .ct_eq(&Sha256::digest(presented.as_bytes()))
            .into()
    }

    /// `NODAI_ADMIN_TOKEN` if set; else the token in `<data-dir>/admin-token`,
    /// generated (mode 0600) at first start.
    pub fn load_or_create(configured: Option<&AdminToken>, data_dir: &Path) -> std::io::Result<AdminToken> {
        if let Some(token) = configured {
            return Ok(token.clone());
        }
        let path = data_dir.join("admin-token");
        match std::fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => return Ok(AdminToken(token.trim().to_owned())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let token = format!("nat_{}", hex::encode(random_bytes::<32>()?));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        tracing::info!(path = %path.display(), "generated an admin token; read it from this file");
        Ok(AdminToken(token))
    }
}

/// Bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes)
}

/// Middleware: 401 unless the request carries the admin token, as RFC 6750
/// says a bearer token is carried: one `Authorization` header (two are a
/// 400, never the first taken), its scheme `Bearer` in any case (RFC 7235).
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let mut headers = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (headers.next(), headers.next()) else {
        return Err(match request.headers().contains_key(header::AUTHORIZATION) {
            true => ApiError::AmbiguousAuthorization,
            false => ApiError::Unauthorized,
        });
    };
    match bearer(value.as_bytes()) {
        Some(token) if state.admin_token.matches(token) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::InvalidToken),
        None => Err(ApiError::Unauthorized),
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive.
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = AdminToken::load_or_create(None, dir.path()).unwrap();
        let again = AdminToken::load_or_create(None, dir.path()).unwrap();
        assert!(first.matches(&again.0));
        assert!(first.0.starts_with("nat_") && first.0.len() == 68);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("admin-token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!first.matches("nat_wrong"));
        assert_eq!(format!("{first:?}"), "AdminToken(***)");
        let configured = AdminToken::load_or_create(Some(&AdminToken::new("s3cret".into())), dir.path()).unwrap();
        assert!(configured.matches("s3cret"));
    }

    #[test]
    fn a_bearer_credential_in_any_case() {
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("abc", None),
        ] {
            assert_eq!(bearer(value.as_bytes()), token, "{value:?}");
        }
        assert_eq!(bearer(b"Bearer \xff"), None);
    }
}
