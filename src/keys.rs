//! The key of object versions. From `-hmac-key-file` when set; otherwise a random key held
//! for the life of the process (versions then stay stable while the provider runs and
//! change once when it restarts).

use crate::settings::Settings;
use crate::version::VersionKey;
use anyhow::Context;

pub fn load(settings: &Settings) -> anyhow::Result<VersionKey> {
    if let Some(path) = &settings.hmac_key_file {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read -hmac-key-file {}", path.display()))?;
        let trimmed = bytes.trim_ascii();
        anyhow::ensure!(
            trimmed.len() >= 16,
            "-hmac-key-file {} holds {} bytes: use at least 16 random bytes (32 recommended)",
            path.display(),
            trimmed.len()
        );
        tracing::info!(file = %path.display(), "object versions keyed from file");
        return Ok(VersionKey::new(trimmed.to_vec()));
    }
    let mut key = vec![0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut key[..]);
    tracing::info!(
        "object versions keyed by a per-process random key (set -hmac-key-file to share one across nodes)"
    );
    Ok(VersionKey::new(key))
}
