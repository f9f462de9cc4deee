//! One set of signing material in memory, and the certificates it makes.
//!
//! A [`Signer`] is only built from material that passed [`crate::material`]'s checks and a
//! self-test: a throwaway leaf is issued and verified against the trust bundle with
//! rustls-webpki, the same path validation TLS peers perform. A CA that cannot produce a
//! certificate its own bundle accepts therefore fails at startup, not at the first proxy.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::error::CaError;
use crate::identity::Identity;
use crate::pem::cert_to_pem;
use crate::pki;

/// Serial numbers are 128 random bits (RFC 5280 allows up to 20 octets; CAB/F wants ≥ 64
/// bits of entropy so that colliding prefixes cannot be engineered).
const SERIAL_BYTES: usize = 16;

/// The issuing half of the CA: key, issuer name and the chain that follows each leaf.
pub(crate) struct Signer {
    issuer: Issuer<'static, KeyPair>,
    /// What follows the leaf in every issued chain: signing certificate, any intermediates,
    /// and the root last (Istio's `CreateCertificate` order).
    chain_pem: Vec<String>,
    /// End of the signing certificate's validity; no leaf outlives it.
    not_after: OffsetDateTime,
}

/// A freshly signed leaf.
pub(crate) struct Issued {
    pub(crate) pem: String,
    pub(crate) der: CertificateDer<'static>,
    pub(crate) serial: String,
    pub(crate) not_after: OffsetDateTime,
}

impl Signer {
    /// Wraps checked material and runs the self-test against `roots`.
    pub(crate) fn new(
        signing_cert: &CertificateDer<'static>,
        key: KeyPair,
        chain: &[CertificateDer<'static>],
        roots: &[CertificateDer<'static>],
    ) -> Result<Self, CaError> {
        let not_after = pki::not_after(signing_cert)?;
        let issuer = Issuer::from_ca_cert_der(signing_cert, key)
            .map_err(|e| CaError::SelfTest(format!("cannot use the signing certificate: {e}")))?;
        let signer = Signer {
            issuer,
            chain_pem: chain.iter().map(|c| cert_to_pem(c)).collect(),
            not_after,
        };
        signer.self_test(chain, roots)?;
        Ok(signer)
    }

    /// The chain that follows each leaf, as PEM.
    pub(crate) fn chain_pem(&self) -> &[String] {
        &self.chain_pem
    }

    /// Issues a leaf (CA:false, digitalSignature + keyEncipherment, serverAuth + clientAuth,
    /// with AKI) for `public_key` with exactly `sans`, valid from `backdate` ago for `ttl`
    /// but never past the signing certificate.
    pub(crate) fn issue_leaf(
        &self,
        public_key: &impl PublicKeyData,
        sans: Vec<SanType>,
        ttl: Duration,
        backdate: Duration,
    ) -> Result<Issued, CaError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        // An empty subject, as Istio issues: the identity lives in the (then critical) SAN.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.not_before = now - backdate;
        params.not_after = (now + ttl).min(self.not_after);
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        Ok(Issued {
            pem: cert.pem(),
            der: cert.der().clone(),
            serial: serial.to_string(),
            not_after: params.not_after,
        })
    }

    /// Issues a probe leaf for a throwaway key and checks that the bundle accepts it.
    fn self_test(
        &self,
        chain: &[CertificateDer<'static>],
        roots: &[CertificateDer<'static>],
    ) -> Result<(), CaError> {
        let key = crate::keys::generate_p256()?;
        let probe = Identity::new("shoal.invalid", "shoal-ca", "self-test")?;
        let san = uri_san(&probe)?;
        let leaf = self.issue_leaf(&key, vec![san], Duration::from_secs(300), Duration::ZERO)?;
        let mut presented = vec![leaf.der];
        presented.extend(chain.iter().cloned());
        pki::verify_chain(&presented, roots).map_err(CaError::SelfTest)
    }
}

/// The URI SAN for an identity.
pub(crate) fn uri_san(identity: &Identity) -> Result<SanType, CaError> {
    let uri = identity
        .spiffe_uri()
        .try_into()
        .map_err(|e: rcgen::Error| CaError::Signing(e.to_string()))?;
    Ok(SanType::URI(uri))
}

/// A self-signed root for `trust_domain`: ECDSA P-256, CA:true, keyCertSign + cRLSign,
/// subject `O=<trust domain>` like Istio's self-signed root, valid for `ttl`.
pub(crate) fn generate_root(
    trust_domain: &str,
    ttl: Duration,
) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let key = crate::keys::generate_p256()?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?);
    // Backdated so that replicas with slightly slow clocks accept it at once.
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + ttl;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Signing(e.to_string()))?;
    Ok((cert.der().clone(), key))
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Signing("system randomness unavailable".into()))?;
    // Positive, and never starting with a zero byte, so the DER INTEGER has a fixed length.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
