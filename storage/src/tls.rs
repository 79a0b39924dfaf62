//! TLS to the backends: one rustls crypto provider (aws-lc-rs) for the process.

/// Installs aws-lc-rs as the process's rustls provider, once; harmless if one is
/// already in (the redis driver asks for the process default).
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A rustls client configuration that verifies servers against the CA certificates in
/// the PEM file `ca`, or the system's roots without one.
pub fn client_config(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, crate::StorageError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    install_provider();
    let bad = |what: String| crate::StorageError::Config(what);
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| bad(format!("tls_ca {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(format!("tls_ca {}: no certificate in it", path.display())));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(format!("tls_ca {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(bad("tls: no system root certificates found; name a CA with tls_ca".into()));
            }
        }
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let e = super::client_config(Some(std::path::Path::new("/nonexistent/ca.pem"))).unwrap_err().to_string();
        assert!(e.contains("tls_ca") && e.contains("/nonexistent/ca.pem"), "{e}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let e = super::client_config(Some(empty.path())).unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
    }
}
