//! The server secret and the admin token, from configuration or generated once into
//! the data directory (mode 0600).

use rand::RngCore;
use std::path::Path;

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let value = make();
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(value.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok((value, true))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn secret(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured.filter(|s| !s.is_empty()) {
        return Ok(s.as_bytes().to_vec());
    }
    Ok(read_or_create(&data_dir.join("secret.key"), || random_hex(32))?.0.into_bytes())
}

pub fn admin_token(configured: Option<&str>, data_dir: &Path) -> std::io::Result<String> {
    if let Some(t) = configured.filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    let path = data_dir.join("admin.token");
    let (token, created) = read_or_create(&path, || format!("kurz-admin-{}", random_hex(24)))?;
    if created {
        tracing::warn!(event = "admin_token_generated", path = %path.display(), "KURZ_ADMIN_TOKEN is unset: generated an admin token");
    } else {
        tracing::info!(event = "admin_token_loaded", path = %path.display());
    }
    Ok(token)
}
