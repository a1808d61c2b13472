//! Who the printer is: the TLS certificate check for MQTT (8883) and FTPS (990).
//!
//! A Bambu printer's certificate is issued by Bambu's private CA (`BBL CA2 RSA` and per-model
//! device CAs, bundled in `agent/certs/bambu/`) and names the printer by its serial in the
//! subject CN, with no usable subject alt name for an IP address. rustls's WebPKI verifier
//! matches only alt names, so this verifier checks the chain with WebPKI and then the CN
//! against the configured serial itself. Modes (`[printer.bambu] tls`):
//!
//! - `bambu-ca` (default): chain to Bambu's CA bundle **and** CN == serial;
//! - `pin`: trust on first use: the first connection's leaf SHA-256 is stored in the state
//!   dir and every later connection must present the same certificate (for a model whose CA
//!   we do not ship; a firmware update that rotates the certificate then needs the pin file
//!   deleted, and the error says so);
//! - `insecure`: no check at all, for a test rig; the agent logs a loud warning on each connect.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{Error, RootCertStore, SignatureScheme};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Bambu's CA bundle and device CAs (sources in `agent/certs/bambu/README.md`).
const BAMBU_CAS: &[&[u8]] = &[
    include_bytes!("../../certs/bambu/openbambuapi_ca_cert.pem"),
    include_bytes!("../../certs/bambu/ha-bambulab_bambu_h2c_251122.cert"),
    include_bytes!("../../certs/bambu/ha-bambulab_bambu_p2s_250626.cert"),
    include_bytes!("../../certs/bambu/ha-bambulab_bambu_x2c_260425.cert"),
];

/// How the printer's certificate is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    #[default]
    BambuCa,
    Pin,
    Insecure,
}

/// The check itself; see the module docs.
#[derive(Debug)]
pub struct PrinterVerifier {
    mode: TlsMode,
    serial: String,
    roots: RootCertStore,
    /// `pin` mode: the expected leaf SHA-256 (loaded from the pin file, or learned now).
    pin: Mutex<Option<[u8; 32]>>,
    /// Where the pin lives, for the error text.
    pin_file: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl PrinterVerifier {
    /// `roots`: PEM bundles to trust (Bambu's by default, see [`bambu_roots`]).
    pub fn new(
        mode: TlsMode,
        serial: &str,
        roots: RootCertStore,
        pin: Option<[u8; 32]>,
        pin_file: PathBuf,
    ) -> Self {
        Self {
            mode,
            serial: serial.to_string(),
            roots,
            pin: Mutex::new(pin),
            pin_file,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// The pin now in force (after a first connection in `pin` mode: the learned one).
    pub fn pin(&self) -> Option<[u8; 32]> {
        self.pin.lock().map(|p| *p).unwrap_or(None)
    }

    fn check(
        &self,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        match self.mode {
            TlsMode::Insecure => Ok(()),
            TlsMode::Pin => {
                let seen: [u8; 32] = Sha256::digest(leaf.as_ref()).into();
                let mut pin = self
                    .pin
                    .lock()
                    .map_err(|_| Error::General("pin lock poisoned".into()))?;
                match *pin {
                    None => {
                        *pin = Some(seen);
                        Ok(())
                    }
                    Some(p) if p == seen => Ok(()),
                    Some(p) => Err(Error::General(format!(
                        "the printer presented a different certificate (sha256 {}) than the one pinned on first use ({}); if its firmware was updated, delete {} to pin the new one, otherwise check who answers at this address",
                        hex::encode(seen),
                        hex::encode(p),
                        self.pin_file.display()
                    ))),
                }
            }
            TlsMode::BambuCa => {
                let parsed = rustls::server::ParsedCertificate::try_from(leaf)?;
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    &self.roots,
                    chain,
                    now,
                    self.provider.signature_verification_algorithms.all,
                )?;
                let cn = common_name(leaf).unwrap_or_default();
                if cn != self.serial {
                    return Err(Error::General(format!(
                        "the certificate names printer {cn:?}, not the configured serial {:?}; check printer.bambu.serial (Settings → Device on the printer's screen) and the address",
                        self.serial
                    )));
                }
                Ok(())
            }
        }
    }
}

impl ServerCertVerifier for PrinterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // The name we dialled (an IP) is not in the certificate; the serial is checked instead.
        self.check(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The subject CN of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Trust anchors from PEM bundles; certificates that do not parse are skipped (counted).
pub fn roots_from_pem(bundles: &[&[u8]]) -> (RootCertStore, usize) {
    let mut roots = RootCertStore::empty();
    let mut bad = 0;
    for pem in bundles {
        for cert in CertificateDer::pem_slice_iter(pem) {
            match cert.map(|c| roots.add(c)) {
                Ok(Ok(())) => {}
                _ => bad += 1,
            }
        }
    }
    (roots, bad)
}

/// Bambu's CA bundle as trust anchors.
pub fn bambu_roots() -> RootCertStore {
    roots_from_pem(BAMBU_CAS).0
}

/// A rustls client config that checks the printer with `verifier` (ring, TLS 1.2 and 1.3).
pub fn bambu_client_config(verifier: Arc<PrinterVerifier>) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_bambu_cas_all_load_as_trust_anchors() {
        let (roots, bad) = roots_from_pem(BAMBU_CAS);
        assert_eq!(bad, 0);
        // 5 in the OpenBambuAPI bundle + 3 per-model device CAs.
        assert_eq!(roots.len(), 8);
        let first = CertificateDer::pem_slice_iter(BAMBU_CAS[0])
            .next()
            .and_then(Result::ok)
            .expect("pem");
        assert_eq!(common_name(&first).as_deref(), Some("BBL CA2 RSA"));
    }
}
