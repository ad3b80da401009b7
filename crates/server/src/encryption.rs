//! Encryption at rest on a node: `[encryption]` in its config wraps its redb engine in
//! `meridian_storage::EncryptedEngine` (see there for the format and the invariants), and the
//! admin endpoints rotate the data key (`POST /v1/admin/rotate-key`, audited) and report the
//! keyring (`GET /v1/admin/encryption`). After a rotation, and at start when older keys
//! remain, one background pass re-seals older values and retires their keys.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use meridian_storage::{EncryptedEngine, Kek};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `[encryption]` in a node's config. Present: values are encrypted at rest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A file holding the key-encryption key (64 hex digits); it must not be under
    /// `data_dir`. Absent: the `MERIDIAN_KEK` environment variable.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
}

impl EncryptionConfig {
    /// The key-encryption key, or why it cannot be had.
    pub fn kek(&self, data_dir: &Path) -> Result<Kek, String> {
        let text = match &self.kek_file {
            Some(p) => {
                let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                if abs(p).starts_with(abs(data_dir)) {
                    return Err(format!(
                        "kek_file {} is inside data_dir {}: the key-encryption key must live apart from the data it protects",
                        p.display(),
                        data_dir.display()
                    ));
                }
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read kek_file {}: {e}", p.display()))?
            }
            None => std::env::var("MERIDIAN_KEK").map_err(|_| {
                "[encryption] needs a key-encryption key: set kek_file or MERIDIAN_KEK (generate one with `meridian admin new-kek`)".to_string()
            })?,
        };
        Kek::parse(&text)
    }
}

/// A new random key-encryption key, 64 hex digits.
pub fn new_kek_hex() -> String {
    Kek::generate_hex()
}

/// A node's encryption state: the engine wrapper and its background pass.
pub struct Encryption {
    pub engine: Arc<EncryptedEngine>,
    running: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Encryption {
    pub fn new(engine: Arc<EncryptedEngine>) -> Arc<Encryption> {
        let e = Arc::new(Encryption {
            engine,
            running: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        if e.engine.has_old_keys() {
            e.clone().reencrypt_in_background();
        }
        e
    }

    /// Starts a re-encryption pass unless one runs (a running pass re-seals under the key
    /// active when it reaches each value, so one pass after the last rotation suffices; a
    /// rotation during a pass is covered by the pass it then starts itself, see `rotate`).
    fn reencrypt_in_background(self: Arc<Self>) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        std::thread::Builder::new()
            .name("reencrypt".into())
            .spawn(move || loop {
                let started = std::time::Instant::now();
                match self.engine.reencrypt_all() {
                    Ok(n) => {
                        tracing::info!(values = n, took_ms = started.elapsed().as_millis() as u64, keys = ?self.engine.status().keys, "re-encryption pass done; older data keys retired");
                        *self.last_error.lock().unwrap() = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "re-encryption pass failed; it is retried at the next rotation or restart");
                        *self.last_error.lock().unwrap() = Some(e.to_string());
                    }
                }
                self.running.store(false, Ordering::SeqCst);
                // A rotation that came while this pass ran left older keys: go again.
                if !self.engine.has_old_keys() || self.last_error.lock().unwrap().is_some() {
                    return;
                }
                if self.running.swap(true, Ordering::SeqCst) {
                    return;
                }
            })
            .expect("spawn the re-encryption thread");
    }

    /// Makes a new data key active now and starts moving older values onto it.
    pub fn rotate(self: &Arc<Self>) -> Result<u32, String> {
        let id = self.engine.rotate().map_err(|e| e.to_string())?;
        metrics::counter!("meridian_encryption_rotations_total").increment(1);
        self.clone().reencrypt_in_background();
        Ok(id)
    }

    pub fn status(&self) -> Value {
        let s = self.engine.status();
        json!({
            "enabled": true,
            "active_key": s.active_key,
            "keys": s.keys,
            "reencrypting": self.running.load(Ordering::SeqCst),
            "reencrypted_values": s.reencrypted_values,
            "rotations": s.rotations,
            "last_error": *self.last_error.lock().unwrap(),
        })
    }
}
