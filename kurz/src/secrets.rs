//! The server secret and the admin token, from configuration or generated once into
//! the data directory, and the data directory's own protection: 0700, its files 0600.

use rand::RngCore;
use std::path::Path;

/// The shortest `KURZ_SECRET` and `KURZ_ADMIN_TOKEN` taken: 32 bytes, 256 bits if
/// random (`openssl rand -hex 32` gives 64). A short secret lets anyone who sees one
/// session token or derived short code guess it offline, then sign sessions as anyone.
pub const MIN_SECRET_BYTES: usize = 32;

/// Refuses a configured secret or admin token shorter than [`MIN_SECRET_BYTES`], with
/// a message naming the setting. Generated ones are long enough by construction.
pub fn check(secret: Option<&str>, admin_token: Option<&str>, previous: &[String]) -> Result<(), String> {
    let previous = previous.iter().map(|p| ("KURZ_PREVIOUS_SECRETS", Some(p.trim())));
    for (name, value) in [("KURZ_SECRET", secret), ("KURZ_ADMIN_TOKEN", admin_token)].into_iter().chain(previous) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            if v.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "{name} is {} bytes; it must be at least {MIN_SECRET_BYTES} (generate one with `openssl rand -hex 32`), or unset it to have kurz generate one into the data directory",
                    v.len()
                ));
            }
        }
    }
    Ok(())
}

/// New files and directories of this process are readable by its user only (umask
/// 077): the log, the store, the click spool, the secret files. Call first in `main`,
/// before any thread starts.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` mode 0700, or tightens an existing one: the directory and everything
/// in it lose group and other access (data directories made by older versions were
/// 0755 with 0644 files).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    tighten(dir)?;
    Ok(())
}

#[cfg(unix)]
fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(()); // not followed: what it points at is not ours to change
    }
    let mode = meta.permissions().mode();
    let want = if meta.is_dir() { mode & 0o700 | 0o700 } else { mode & 0o700 };
    if mode & 0o7777 != want {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path())?;
        }
    }
    Ok(())
}

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
    // The rename is durable once the directory is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        kurz_storage::log::embedded::sync_dir(dir)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_by_name() {
        assert!(check(None, None, &[]).is_ok());
        assert!(check(Some(&"s".repeat(32)), Some(&"t".repeat(40)), &["p".repeat(32)]).is_ok());
        let e = check(Some("x"), None, &[]).unwrap_err();
        assert!(e.starts_with("KURZ_SECRET is 1 bytes"), "{e}");
        let e = check(Some(&"s".repeat(32)), Some("one-letter"), &[]).unwrap_err();
        assert!(e.starts_with("KURZ_ADMIN_TOKEN"), "{e}");
        let e = check(None, None, &["p".repeat(32), "short".into()]).unwrap_err();
        assert!(e.starts_with("KURZ_PREVIOUS_SECRETS"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn an_old_open_data_dir_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("click-spool")).unwrap();
        std::fs::write(dir.join("log.redb"), b"x").unwrap();
        std::fs::write(dir.join("click-spool/0.spool"), b"x").unwrap();
        for (p, m) in [
            (dir.clone(), 0o755),
            (dir.join("click-spool"), 0o755),
            (dir.join("log.redb"), 0o644),
            (dir.join("click-spool/0.spool"), 0o666),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("click-spool")), 0o700);
        assert_eq!(mode(&dir.join("log.redb")), 0o600);
        assert_eq!(mode(&dir.join("click-spool/0.spool")), 0o600);
    }
}
