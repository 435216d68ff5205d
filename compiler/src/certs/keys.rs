//! Public keys, to match a private key to its certificate and to describe it ("RSA 2048").
//!
//! A certificate's key comes from x509-parser. A private key's public half is read from the
//! key file's own structure (PKCS#8, PKCS#1 RSA, SEC1 EC) with asn1-rs, the DER reader
//! x509-parser is built on, or derived by *ring* when the file does not carry it (Ed25519
//! as OpenSSL writes it). Reading rather than loading matters: *ring* refuses RSA keys under
//! 2048 bits and SEC1 / PKCS#1 files altogether, and those are exactly the files an
//! integration engineer may be handed and needs a precise answer about.

use rustls_pki_types::PrivateKeyDer;
use x509_parser::asn1_rs::{
    Any, BitString, Class, Error as AsnError, FromDer, Integer, OctetString, Oid,
    OptTaggedExplicit, OptTaggedImplicit, Sequence, Tag,
};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// A public key as this module compares and describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// Modulus and exponent, without sign padding.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// An elliptic-curve point (SEC1 encoding) and the curve when known.
    Ec {
        curve: Option<Oid<'static>>,
        point: Vec<u8>,
    },
    /// Any other algorithm: its OID and the raw subjectPublicKey bits.
    Other {
        algorithm: Oid<'static>,
        key: Vec<u8>,
    },
}

/// What a private key file says about its public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrivateKeyInfo {
    /// The public key, read from the key structure or derived from it.
    Public(PublicKey),
    /// A well-formed key that carries no public key which could be derived here (an EC key
    /// written without its public point).
    Unchecked,
    /// Not a private key structure.
    Malformed,
}

impl PublicKey {
    /// The key of a certificate's SubjectPublicKeyInfo; `None` when its bits do not parse.
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Option<Self> {
        Some(match spki.parsed().ok()? {
            ParsedKey::RSA(rsa) => PublicKey::Rsa {
                modulus: unsigned(rsa.modulus).to_vec(),
                exponent: unsigned(rsa.exponent).to_vec(),
            },
            ParsedKey::EC(point) => PublicKey::Ec {
                curve: curve_of(&spki.algorithm),
                point: point.data().to_vec(),
            },
            _ => PublicKey::Other {
                algorithm: spki.algorithm.algorithm.to_owned(),
                key: spki.subject_public_key.data.to_vec(),
            },
        })
    }

    /// "RSA 2048", "ECDSA P-256", "Ed25519", …
    pub(crate) fn describe(&self) -> String {
        match self {
            PublicKey::Rsa { modulus, .. } => format!("RSA {}", bit_len(modulus)),
            PublicKey::Ec { curve, .. } => match curve {
                Some(c) if *c == OID_EC_P256 => "ECDSA P-256".to_owned(),
                Some(c) if *c == OID_NIST_EC_P384 => "ECDSA P-384".to_owned(),
                Some(c) if *c == OID_NIST_EC_P521 => "ECDSA P-521".to_owned(),
                Some(other) => format!("ECDSA (curve {other})"),
                None => "ECDSA (unknown curve)".to_owned(),
            },
            PublicKey::Other { algorithm, .. } => {
                if *algorithm == OID_SIG_ED25519 {
                    "Ed25519".to_owned()
                } else if *algorithm == OID_SIG_ED448 {
                    "Ed448".to_owned()
                } else if *algorithm == OID_PKCS1_RSASSAPSS {
                    "RSA-PSS".to_owned()
                } else {
                    format!("unknown key type (OID {algorithm})")
                }
            }
        }
    }

    /// Short algorithm family for messages: "an RSA key", "an ECDSA key", …
    pub(crate) fn family(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "an RSA key",
            PublicKey::Ec { .. } => "an ECDSA key",
            PublicKey::Other { algorithm, .. } if *algorithm == OID_SIG_ED25519 => "an Ed25519 key",
            PublicKey::Other { .. } => "a key of another type",
        }
    }

    /// RSA modulus size in bits, if this is an RSA key.
    pub(crate) fn rsa_bits(&self) -> Option<usize> {
        match self {
            PublicKey::Rsa { modulus, .. } => Some(bit_len(modulus)),
            _ => None,
        }
    }

    /// Whether two keys are the same key. Curves are compared only when both are known.
    pub(crate) fn same_key(&self, other: &PublicKey) -> bool {
        match (self, other) {
            (
                PublicKey::Ec {
                    curve: c1,
                    point: p1,
                },
                PublicKey::Ec {
                    curve: c2,
                    point: p2,
                },
            ) => p1 == p2 && (c1.is_none() || c2.is_none() || c1 == c2),
            (a, b) => a == b,
        }
    }

    /// Whether the two keys are of the same kind (so a mismatch is "another key", not
    /// "another type of key").
    pub(crate) fn same_family(&self, other: &PublicKey) -> bool {
        match (self, other) {
            (PublicKey::Rsa { .. }, PublicKey::Rsa { .. })
            | (PublicKey::Ec { .. }, PublicKey::Ec { .. }) => true,
            (PublicKey::Other { algorithm: a, .. }, PublicKey::Other { algorithm: b, .. }) => {
                a == b
            }
            _ => false,
        }
    }
}

/// The public half of a private key, whatever its file format.
pub(crate) fn private_key_info(key: &PrivateKeyDer<'_>) -> PrivateKeyInfo {
    match key {
        PrivateKeyDer::Pkcs1(k) => public_of(rsa_private(k.secret_pkcs1_der())),
        PrivateKeyDer::Sec1(k) => ec_private(k.secret_sec1_der(), None),
        PrivateKeyDer::Pkcs8(k) => pkcs8(k.secret_pkcs8_der()),
        _ => PrivateKeyInfo::Malformed,
    }
}

fn public_of(key: Option<PublicKey>) -> PrivateKeyInfo {
    key.map_or(PrivateKeyInfo::Malformed, PrivateKeyInfo::Public)
}

/// The named curve of an `id-ecPublicKey` algorithm identifier.
fn curve_of(algorithm: &AlgorithmIdentifier<'_>) -> Option<Oid<'static>> {
    let params = algorithm.parameters.as_ref()?;
    params.as_oid().ok().map(|oid| oid.to_owned())
}

/// RSAPrivateKey (PKCS#1) ::= SEQUENCE { version, modulus, publicExponent, … }
fn rsa_private(der: &[u8]) -> Option<PublicKey> {
    let (_, seq) = Sequence::from_der(der).ok()?;
    let (rest, _version) = Integer::from_der(&seq.content).ok()?;
    let (rest, modulus) = Integer::from_der(rest).ok()?;
    let (_, exponent) = Integer::from_der(rest).ok()?;
    Some(PublicKey::Rsa {
        modulus: unsigned(modulus.as_ref()).to_vec(),
        exponent: unsigned(exponent.as_ref()).to_vec(),
    })
}

/// ECPrivateKey (SEC1) ::= SEQUENCE { version, privateKey OCTET STRING,
///   parameters [0] ECParameters OPTIONAL, publicKey [1] BIT STRING OPTIONAL }
/// `curve` is the PKCS#8 wrapper's, for a key that does not name its own.
fn ec_private(der: &[u8], curve: Option<Oid<'static>>) -> PrivateKeyInfo {
    let read = || -> Option<(Option<Oid<'static>>, Option<Vec<u8>>)> {
        let (_, seq) = Sequence::from_der(der).ok()?;
        let (rest, _version) = Integer::from_der(&seq.content).ok()?;
        let (rest, _secret) = OctetString::from_der(rest).ok()?;
        let (rest, params) = OptTaggedExplicit::<Oid, AsnError, 0>::from_der(rest).ok()?;
        let (_, public) = OptTaggedExplicit::<BitString, AsnError, 1>::from_der(rest).ok()?;
        Some((
            params.map(|p| p.into_inner().to_owned()),
            public.map(|p| p.into_inner().data.into_owned()),
        ))
    };
    match read() {
        None => PrivateKeyInfo::Malformed,
        Some((_, None)) => PrivateKeyInfo::Unchecked,
        Some((own, Some(point))) => PrivateKeyInfo::Public(PublicKey::Ec {
            curve: own.or(curve),
            point,
        }),
    }
}

/// OneAsymmetricKey (PKCS#8) ::= SEQUENCE { version, privateKeyAlgorithm AlgorithmIdentifier,
///   privateKey OCTET STRING, attributes [0] OPTIONAL, publicKey [1] IMPLICIT BIT STRING OPTIONAL }
fn pkcs8(der: &[u8]) -> PrivateKeyInfo {
    /// The algorithm, its curve (EC), the inner key and the public key when present.
    struct Parts {
        oid: Oid<'static>,
        curve: Option<Oid<'static>>,
        inner: Vec<u8>,
        public: Option<Vec<u8>>,
    }
    let read = || -> Option<Parts> {
        let (_, seq) = Sequence::from_der(der).ok()?;
        let (rest, _version) = Integer::from_der(&seq.content).ok()?;
        let (rest, algorithm) = AlgorithmIdentifier::from_der(rest).ok()?;
        let (rest, inner) = OctetString::from_der(rest).ok()?;
        let rest = match Any::from_der(rest) {
            Ok((after, attributes))
                if attributes.class() == Class::ContextSpecific && attributes.tag() == Tag(0) =>
            {
                after
            }
            _ => rest,
        };
        let (_, public) = OptTaggedImplicit::<BitString, AsnError, 1>::from_der(rest).ok()?;
        Some(Parts {
            oid: algorithm.algorithm.to_owned(),
            curve: curve_of(&algorithm),
            inner: inner.as_ref().to_vec(),
            public: public.map(|p| p.into_inner().data.into_owned()),
        })
    };
    let Some(Parts {
        oid,
        curve,
        inner,
        public,
    }) = read()
    else {
        return PrivateKeyInfo::Malformed;
    };
    if oid == OID_PKCS1_RSAENCRYPTION {
        return public_of(rsa_private(&inner));
    }
    if oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        return ec_private(&inner, curve);
    }
    if let Some(key) = public {
        return PrivateKeyInfo::Public(PublicKey::Other {
            algorithm: oid,
            key,
        });
    }
    if oid == OID_SIG_ED25519 {
        // OpenSSL writes Ed25519 keys as PKCS#8 v1, without the public key; *ring* derives it.
        if let Ok(pair) = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            use ring::signature::KeyPair;
            return PrivateKeyInfo::Public(PublicKey::Other {
                algorithm: oid,
                key: pair.public_key().as_ref().to_vec(),
            });
        }
        return PrivateKeyInfo::Malformed;
    }
    PrivateKeyInfo::Unchecked
}

/// A DER INTEGER's content without its sign padding.
fn unsigned(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
    int.get(start..).unwrap_or_default()
}

/// Significant bits of an unsigned big-endian number.
fn bit_len(unsigned_be: &[u8]) -> usize {
    let n = unsigned(unsigned_be);
    match n.first() {
        None => 0,
        Some(&first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

    #[test]
    fn malformed_input_never_panics() {
        let samples: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x85, 0, 0, 0, 0, 0],
            &[0x1f, 0x00],
            &[0x30, 0x03, 0x02, 0x01],
            &[0x30, 0x02, 0x02, 0x00],
        ];
        // Every prefix of a real PKCS#8 header too.
        let header = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let prefixes = (0..header.len()).map(|i| &header[..i]);
        for s in samples.iter().copied().chain(prefixes) {
            let keys = [
                PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(s)),
                PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(s)),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(s)),
            ];
            for key in &keys {
                assert_eq!(private_key_info(key), PrivateKeyInfo::Malformed, "{s:02x?}");
            }
        }
    }

    #[test]
    fn curves_are_named_and_unknown_ones_shown_by_oid() {
        let ec = |curve: Option<Oid<'static>>| PublicKey::Ec {
            curve,
            point: vec![4],
        };
        assert_eq!(ec(Some(OID_NIST_EC_P384)).describe(), "ECDSA P-384");
        assert_eq!(ec(None).describe(), "ECDSA (unknown curve)");
        let brainpool = Oid::from(&[1, 3, 36, 3, 3, 2, 8, 1, 1, 7]).ok();
        assert_eq!(
            ec(brainpool).describe(),
            "ECDSA (curve 1.3.36.3.3.2.8.1.1.7)"
        );
        let rsa = PublicKey::Other {
            algorithm: OID_PKCS1_RSAENCRYPTION,
            key: Vec::new(),
        };
        assert_eq!(
            rsa.describe(),
            "unknown key type (OID 1.2.840.113549.1.1.1)"
        );
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert_eq!(bit_len(&[]), 0);
    }
}
