//! Who may call: the admin (HTTP Basic, password hashed with Argon2 in a 0600 file) and, for
//! `/job` and `/run`, a service's bearer token. Comparisons are constant-time. Argon2 runs off
//! the async workers, a bounded number at a time, and an address that keeps sending wrong
//! passwords is answered 429 without hashing: guessing cannot starve ingest or `/health`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a password file of fogd ({message})")]
    Corrupt { path: PathBuf, message: String },
}

/// The admin's credentials as stored: the user and an Argon2 PHC string.
pub struct Admin {
    pub user: String,
    hash: String,
    /// Credentials that verified in the last `VERIFIED_TTL` (SHA-256 of user and password).
    /// Argon2 costs ~50 ms (0.5 s in a debug build) by design; a peer that polls with Basic
    /// auth (OSCAR delegation does) would pay it on every call. Wrong passwords are never
    /// cached, so guessing stays as slow as Argon2 makes it.
    verified: std::sync::Mutex<Vec<([u8; 32], Instant)>>,
    /// Argon2 checks allowed at once (each holds a core for ~50 ms).
    checks: Arc<tokio::sync::Semaphore>,
    /// Wrong passwords per address in the current minute.
    failures: std::sync::Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
    max_failures: u32,
}

const VERIFIED_TTL: Duration = Duration::from_secs(300);
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it the oldest windows are forgotten first.
const FAILURE_MEMORY: usize = 4096;
/// How long a check waits for a free Argon2 slot before it is answered 503.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// What a password check came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Wrong,
    /// Too many wrong passwords from this address: try again after this long.
    Throttled(Duration),
    /// Every Argon2 slot stayed busy.
    Busy,
}

pub fn password_file(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway-admin")
}

/// Where the password generated at the first start is handed to the operator (0600, never
/// logged); any later change of password removes it.
pub fn initial_password_file(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway-admin-password")
}

impl Admin {
    /// Reads the stored admin; on first start makes one with a random password, written for the
    /// operator to `initial_password_file` (0600), whose path is returned. The password itself
    /// never goes into a log.
    pub fn load_or_create(data_dir: &Path, user: &str) -> Result<(Admin, Option<PathBuf>), AuthError> {
        let path = password_file(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (u, h) = text.trim().split_once('\n').ok_or_else(|| AuthError::Corrupt {
                    path: path.clone(),
                    message: "expected two lines".into(),
                })?;
                PasswordHash::new(h.trim()).map_err(|e| AuthError::Corrupt {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Ok((Admin::new(u.trim(), h.trim()), None))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let password = crate::journal::random_hex(16);
                let admin = Self::store(data_dir, user, &password)?;
                let handed = initial_password_file(data_dir);
                write_private(&handed, format!("{password}\n").as_bytes()).map_err(|source| {
                    AuthError::Io {
                        path: handed.clone(),
                        source,
                    }
                })?;
                Ok((admin, Some(handed)))
            }
            Err(source) => Err(AuthError::Io { path, source }),
        }
    }

    /// Writes a new password (hashed), replacing the old one.
    pub fn store(data_dir: &Path, user: &str, password: &str) -> Result<Admin, AuthError> {
        let path = password_file(data_dir);
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AuthError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?
            .to_string();
        let io = |source| AuthError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        write_private(&path, format!("{user}\n{hash}\n").as_bytes()).map_err(io)?;
        // A password handed out earlier is no longer the password.
        let _ = std::fs::remove_file(initial_password_file(data_dir));
        Ok(Admin::new(user, &hash))
    }

    fn new(user: &str, hash: &str) -> Admin {
        // Half the cores for hashing at most: the other half keeps ingest and the API going.
        let slots = std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .max(1);
        Admin {
            user: user.to_string(),
            hash: hash.to_string(),
            verified: Default::default(),
            checks: Arc::new(tokio::sync::Semaphore::new(slots)),
            failures: Default::default(),
            max_failures: 10,
        }
    }

    /// Wrong passwords allowed per address and minute (`gateway.max_auth_failures_per_minute`).
    pub fn with_max_failures(mut self, n: u32) -> Admin {
        self.max_failures = n.max(1);
        self
    }

    /// Checks `user`/`password` for a caller at `peer`.
    pub async fn verify(&self, peer: Option<IpAddr>, user: &str, password: &str) -> Verdict {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if self.cached(&digest) {
            return Verdict::Ok;
        }
        if let Some(wait) = self.throttled(peer) {
            return Verdict::Throttled(wait);
        }
        let Ok(Ok(permit)) =
            tokio::time::timeout(CHECK_QUEUE_WAIT, self.checks.clone().acquire_owned()).await
        else {
            return Verdict::Busy;
        };
        // Checked again: failures recorded while this one waited count too, and the same
        // credentials verified meanwhile (200 clients starting at once) need no second hash.
        if let Some(wait) = self.throttled(peer) {
            return Verdict::Throttled(wait);
        }
        if self.cached(&digest) {
            return Verdict::Ok;
        }
        let (want_user, hash) = (self.user.clone(), self.hash.clone());
        let (user, password) = (user.to_string(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = permit;
            verify_slow(&want_user, &hash, &user, &password)
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= 8 {
                cache.remove(0);
            }
            cache.push((digest, Instant::now()));
            Verdict::Ok
        } else {
            self.failed(peer);
            Verdict::Wrong
        }
    }

    /// Did these credentials verify within `VERIFIED_TTL`?
    fn cached(&self, digest: &[u8; 32]) -> bool {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(_, t)| t.elapsed() < VERIFIED_TTL);
        cache.iter().any(|(d, _)| bool::from(d.ct_eq(digest)))
    }

    /// How long `peer` must wait, when it used up its wrong passwords for this minute.
    fn throttled(&self, peer: Option<IpAddr>) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (n, since) = map.get(&peer)?;
        let age = since.elapsed();
        (*n >= self.max_failures && age < FAILURE_WINDOW).then(|| FAILURE_WINDOW - age)
    }

    fn failed(&self, peer: Option<IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FAILURE_MEMORY {
            map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if map.len() >= FAILURE_MEMORY {
                // Many addresses at once: forget the oldest windows (the Argon2 slots still
                // bound the cost of what is forgotten).
                let mut ages: Vec<Instant> = map.values().map(|(_, s)| *s).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                map.retain(|_, (_, since)| *since > cut);
            }
        }
        let e = map.entry(peer).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAILURE_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }
}

fn verify_slow(want_user: &str, hash: &str, user: &str, password: &str) -> bool {
    let user_ok: bool = want_user.as_bytes().ct_eq(user.as_bytes()).into();
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    // Always hash, so a wrong user costs as much time as a wrong password.
    let pw_ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    user_ok && pw_ok
}

/// What the request's `Authorization` header carries.
pub(super) enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
    Malformed,
}

pub(super) fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(v) = v.to_str() else {
        return Credentials::Malformed;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer`, `BASIC` are the same.
    let (scheme, rest) = v.trim_start().split_once(' ').unwrap_or((v, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let b = rest;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
            return Credentials::Malformed;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return Credentials::Malformed;
        };
        return match text.split_once(':') {
            Some((u, p)) => Credentials::Basic(u.to_string(), p.to_string()),
            None => Credentials::Malformed,
        };
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.trim().to_string());
    }
    Credentials::Malformed
}

impl Verdict {
    fn into_result(self, wrong: &str) -> Result<(), ApiError> {
        match self {
            Verdict::Ok => Ok(()),
            Verdict::Wrong => Err(ApiError::forbidden(wrong)),
            Verdict::Throttled(wait) => Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many wrong passwords from this address; try again in {} s",
                    wait.as_secs() + 1
                ),
            )),
            Verdict::Busy => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too many password checks at once; try again",
            )),
        }
    }
}

/// The admin, or 401 (no credentials) / 403 (wrong ones) / 429 (too many wrong ones).
pub async fn require_admin(admin: &Admin, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
    match credentials(headers) {
        Credentials::None => Err(ApiError::unauthorized()),
        Credentials::Basic(u, p) => admin.verify(peer, &u, &p).await.into_result("wrong credentials"),
        _ => Err(ApiError::forbidden("wrong credentials")),
    }
}

/// The service's bearer token, or the admin.
pub async fn require_service(
    admin: &Admin,
    peer: Option<IpAddr>,
    token: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    const WRONG: &str = "wrong token for this service";
    match credentials(headers) {
        Credentials::None => Err(ApiError::unauthorized()),
        Credentials::Bearer(t) if bool::from(t.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Credentials::Basic(u, p) => admin.verify(peer, &u, &p).await.into_result(WRONG),
        _ => Err(ApiError::forbidden(WRONG)),
    }
}

/// Writes `bytes` to `path` readable by this user only (temp file, fsync, rename).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    crate::paths::write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod scheme_tests {
    use super::*;

    fn with(v: &str) -> Credentials {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v.parse().expect("header"));
        credentials(&h)
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            assert!(matches!(with(v), Credentials::Bearer(t) if t == "abc"), "{v}");
        }
        let basic = base64::engine::general_purpose::STANDARD.encode("oscar:pw");
        for scheme in ["Basic", "basic", "BASIC"] {
            let v = format!("{scheme} {basic}");
            assert!(
                matches!(with(&v), Credentials::Basic(u, p) if u == "oscar" && p == "pw"),
                "{v}"
            );
        }
        assert!(matches!(with("Token abc"), Credentials::Malformed));
        assert!(matches!(with("Bearer"), Credentials::Bearer(t) if t.is_empty()));
    }
}

#[cfg(test)]
mod password_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_first_password_is_handed_over_in_a_private_file_and_removed_when_changed() {
        let dir = tempfile::tempdir().expect("tmp");
        let (admin, handed) = Admin::load_or_create(dir.path(), "oscar").expect("create");
        let handed = handed.expect("a fresh password");
        assert_eq!(handed, initial_password_file(dir.path()));
        let mode = std::fs::metadata(&handed).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pw = std::fs::read_to_string(&handed).expect("read");
        assert_eq!(admin.verify(None, "oscar", pw.trim()).await, Verdict::Ok);
        // Started again: the same admin, nothing new handed out.
        let (again, none) = Admin::load_or_create(dir.path(), "oscar").expect("load");
        assert!(none.is_none());
        assert_eq!(again.verify(None, "oscar", pw.trim()).await, Verdict::Ok);
        Admin::store(dir.path(), "oscar", "a-new-password").expect("reset");
        assert!(!handed.exists(), "a stale password file is removed");
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[tokio::test]
    async fn wrong_passwords_from_one_address_are_throttled_and_others_are_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let admin = Admin::store(dir.path(), "oscar", "right")
            .expect("store")
            .with_max_failures(3);
        let bad: Option<IpAddr> = Some([10, 0, 0, 9].into());
        let good: Option<IpAddr> = Some([10, 0, 0, 1].into());
        for _ in 0..3 {
            assert_eq!(admin.verify(bad, "oscar", "guess").await, Verdict::Wrong);
        }
        // The fourth is answered without hashing, even with the right password.
        let started = Instant::now();
        assert!(
            matches!(admin.verify(bad, "oscar", "guess").await, Verdict::Throttled(w) if w <= FAILURE_WINDOW)
        );
        assert!(matches!(
            admin.verify(bad, "oscar", "right").await,
            Verdict::Throttled(_)
        ));
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "no Argon2 for a throttled address"
        );
        assert_eq!(admin.verify(good, "oscar", "right").await, Verdict::Ok);
    }
}
