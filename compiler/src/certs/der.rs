//! Just enough DER to read public keys: from a certificate's SubjectPublicKeyInfo and from
//! private key files (PKCS#8, PKCS#1 RSA, SEC1 EC), so that a key can be matched to its
//! certificate without loading it into a crypto library. *ring* refuses RSA keys under 2048
//! bits and SEC1/PKCS#1 files altogether, and those are exactly the files an integration
//! engineer may be handed and needs a clear answer about.
//!
//! Every read is bounds-checked and returns `None` on malformed input; nothing here panics.

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
/// `[1]` constructed (SEC1 ECPrivateKey publicKey).
const TAG_CTX1_CONSTRUCTED: u8 = 0xa1;
/// `[1]` primitive (PKCS#8 v2 OneAsymmetricKey publicKey, IMPLICIT BIT STRING).
const TAG_CTX1_PRIMITIVE: u8 = 0x81;

/// rsaEncryption, 1.2.840.113549.1.1.1
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-RSASSA-PSS, 1.2.840.113549.1.1.10
pub(crate) const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// id-ecPublicKey, 1.2.840.10045.2.1
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1, 1.3.132.0.34
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// secp521r1, 1.3.132.0.35
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
/// id-Ed25519, 1.3.101.112
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// id-Ed448, 1.3.101.113
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// One tag-length-value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Reads one TLV from the front of `input`; returns it and the rest.
/// Only single-byte tags and definite lengths (as DER requires).
pub(crate) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags never occur in the structures read here
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((Tlv { tag, value }, rest))
}

/// Reads a TLV that must carry `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv.value, rest))
}

/// Strips the leading zero bytes of a DER INTEGER's content (sign padding).
fn unsigned(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
    int.get(start..).unwrap_or_default()
}

/// A public key as this module compares and describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// Modulus and exponent, without sign padding.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// An elliptic-curve point (SEC1 encoding) and the curve's OID when known.
    Ec {
        curve: Option<Vec<u8>>,
        point: Vec<u8>,
    },
    /// Any other algorithm: its OID and the raw subjectPublicKey bits.
    Other { algorithm: Vec<u8>, key: Vec<u8> },
}

impl PublicKey {
    /// "RSA 2048", "ECDSA P-256", "Ed25519", …
    pub(crate) fn describe(&self) -> String {
        match self {
            PublicKey::Rsa { modulus, .. } => format!("RSA {}", bit_len(modulus)),
            PublicKey::Ec { curve, .. } => match curve.as_deref() {
                Some(OID_P256) => "ECDSA P-256".to_owned(),
                Some(OID_P384) => "ECDSA P-384".to_owned(),
                Some(OID_P521) => "ECDSA P-521".to_owned(),
                Some(other) => format!("ECDSA (curve {})", oid_to_string(other)),
                None => "ECDSA (unknown curve)".to_owned(),
            },
            PublicKey::Other { algorithm, .. } => match algorithm.as_slice() {
                OID_ED25519 => "Ed25519".to_owned(),
                OID_ED448 => "Ed448".to_owned(),
                OID_RSA_PSS => "RSA-PSS".to_owned(),
                other => format!("unknown key type (OID {})", oid_to_string(other)),
            },
        }
    }

    /// Short algorithm family for messages: "an RSA key", "an ECDSA key", …
    pub(crate) fn family(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "an RSA key",
            PublicKey::Ec { .. } => "an ECDSA key",
            PublicKey::Other { algorithm, .. } if algorithm.as_slice() == OID_ED25519 => {
                "an Ed25519 key"
            }
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

    /// The raw subjectPublicKey bytes as *ring* reports a key pair's public key, for keys
    /// this module cannot take apart itself (compared against [`PublicKey::Other`] and
    /// [`PublicKey::Ec`]).
    pub(crate) fn matches_raw(&self, raw: &[u8]) -> bool {
        match self {
            PublicKey::Ec { point, .. } => point.as_slice() == raw,
            PublicKey::Other { key, .. } => key.as_slice() == raw,
            PublicKey::Rsa { modulus, exponent } => parse_rsa_public(raw).is_some_and(|k| {
                k == PublicKey::Rsa {
                    modulus: modulus.clone(),
                    exponent: exponent.clone(),
                }
            }),
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
            (PublicKey::Rsa { .. }, PublicKey::Rsa { .. }) => true,
            (PublicKey::Ec { .. }, PublicKey::Ec { .. }) => true,
            (PublicKey::Other { algorithm: a, .. }, PublicKey::Other { algorithm: b, .. }) => {
                a == b
            }
            _ => false,
        }
    }
}

fn bit_len(unsigned_be: &[u8]) -> usize {
    let n = unsigned(unsigned_be);
    match n.first() {
        None => 0,
        Some(&first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// Dotted form of a DER OID body, for messages.
pub(crate) fn oid_to_string(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
fn parse_rsa_public(der: &[u8]) -> Option<PublicKey> {
    let (seq, _) = expect(der, TAG_SEQUENCE)?;
    let (n, rest) = expect(seq, TAG_INTEGER)?;
    let (e, _) = expect(rest, TAG_INTEGER)?;
    Some(PublicKey::Rsa {
        modulus: unsigned(n).to_vec(),
        exponent: unsigned(e).to_vec(),
    })
}

/// The content of a BIT STRING with no unused bits.
fn bit_string_bytes(value: &[u8]) -> Option<&[u8]> {
    let (&unused, bytes) = value.split_first()?;
    (unused == 0).then_some(bytes)
}

/// SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
pub(crate) fn parse_spki(der: &[u8]) -> Option<PublicKey> {
    let (seq, _) = expect(der, TAG_SEQUENCE)?;
    let (alg, rest) = expect(seq, TAG_SEQUENCE)?;
    let (alg_oid, alg_params) = expect(alg, TAG_OID)?;
    let (bits, _) = expect(rest, TAG_BIT_STRING)?;
    let key = bit_string_bytes(bits)?;
    match alg_oid {
        OID_RSA => parse_rsa_public(key),
        OID_EC => {
            let curve = expect(alg_params, TAG_OID).map(|(c, _)| c.to_vec());
            Some(PublicKey::Ec {
                curve,
                point: key.to_vec(),
            })
        }
        other => Some(PublicKey::Other {
            algorithm: other.to_vec(),
            key: key.to_vec(),
        }),
    }
}

/// What a private key file says about its public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrivateKeyInfo {
    /// The public key could be read from the private key structure.
    Public(PublicKey),
    /// A structure this module understands, but it carries no public key (e.g. an EC key
    /// written without its public point, or Ed25519 in PKCS#8 v1); a crypto library must
    /// derive it.
    NeedsDerivation,
    /// Not a private key structure this module can read.
    Malformed,
}

/// RSAPrivateKey ::= SEQUENCE { version INTEGER, modulus INTEGER, publicExponent INTEGER, … }
pub(crate) fn parse_pkcs1(der: &[u8]) -> PrivateKeyInfo {
    let parsed = (|| {
        let (seq, _) = expect(der, TAG_SEQUENCE)?;
        let (_version, rest) = expect(seq, TAG_INTEGER)?;
        let (n, rest) = expect(rest, TAG_INTEGER)?;
        let (e, _) = expect(rest, TAG_INTEGER)?;
        Some(PublicKey::Rsa {
            modulus: unsigned(n).to_vec(),
            exponent: unsigned(e).to_vec(),
        })
    })();
    parsed.map_or(PrivateKeyInfo::Malformed, PrivateKeyInfo::Public)
}

/// ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING,
///   parameters [0] ECParameters OPTIONAL, publicKey [1] BIT STRING OPTIONAL }
pub(crate) fn parse_sec1(der: &[u8], curve_hint: Option<&[u8]>) -> PrivateKeyInfo {
    let Some((seq, _)) = expect(der, TAG_SEQUENCE) else {
        return PrivateKeyInfo::Malformed;
    };
    let Some((_version, rest)) = expect(seq, TAG_INTEGER) else {
        return PrivateKeyInfo::Malformed;
    };
    let Some((_secret, mut rest)) = expect(rest, TAG_OCTET_STRING) else {
        return PrivateKeyInfo::Malformed;
    };
    let mut curve = curve_hint.map(<[u8]>::to_vec);
    while let Some((tlv, after)) = read_tlv(rest) {
        match tlv.tag {
            0xa0 => {
                if let Some((oid, _)) = expect(tlv.value, TAG_OID) {
                    curve = Some(oid.to_vec());
                }
            }
            TAG_CTX1_CONSTRUCTED => {
                return match expect(tlv.value, TAG_BIT_STRING)
                    .and_then(|(b, _)| bit_string_bytes(b))
                {
                    Some(point) => PrivateKeyInfo::Public(PublicKey::Ec {
                        curve,
                        point: point.to_vec(),
                    }),
                    None => PrivateKeyInfo::Malformed,
                };
            }
            _ => {}
        }
        rest = after;
    }
    PrivateKeyInfo::NeedsDerivation
}

/// OneAsymmetricKey (PKCS#8) ::= SEQUENCE { version INTEGER, privateKeyAlgorithm
///   AlgorithmIdentifier, privateKey OCTET STRING, attributes [0] OPTIONAL,
///   publicKey [1] IMPLICIT BIT STRING OPTIONAL }
pub(crate) fn parse_pkcs8(der: &[u8]) -> PrivateKeyInfo {
    let Some((seq, _)) = expect(der, TAG_SEQUENCE) else {
        return PrivateKeyInfo::Malformed;
    };
    let Some((_version, rest)) = expect(seq, TAG_INTEGER) else {
        return PrivateKeyInfo::Malformed;
    };
    let Some((alg, rest)) = expect(rest, TAG_SEQUENCE) else {
        return PrivateKeyInfo::Malformed;
    };
    let Some((alg_oid, alg_params)) = expect(alg, TAG_OID) else {
        return PrivateKeyInfo::Malformed;
    };
    let Some((inner, mut rest)) = expect(rest, TAG_OCTET_STRING) else {
        return PrivateKeyInfo::Malformed;
    };
    match alg_oid {
        OID_RSA => parse_pkcs1(inner),
        OID_EC => {
            let curve = expect(alg_params, TAG_OID).map(|(c, _)| c);
            parse_sec1(inner, curve)
        }
        other => {
            while let Some((tlv, after)) = read_tlv(rest) {
                if tlv.tag == TAG_CTX1_PRIMITIVE {
                    return match bit_string_bytes(tlv.value) {
                        Some(key) => PrivateKeyInfo::Public(PublicKey::Other {
                            algorithm: other.to_vec(),
                            key: key.to_vec(),
                        }),
                        None => PrivateKeyInfo::Malformed,
                    };
                }
                rest = after;
            }
            PrivateKeyInfo::NeedsDerivation
        }
    }
}

/// The SEC1 ECPrivateKey inside a PKCS#8 EC key (used by tests to make SEC1 files).
#[cfg(test)]
pub(crate) fn pkcs8_inner_key(der: &[u8]) -> Option<&[u8]> {
    let (seq, _) = expect(der, TAG_SEQUENCE)?;
    let (_version, rest) = expect(seq, TAG_INTEGER)?;
    let (_alg, rest) = expect(rest, TAG_SEQUENCE)?;
    let (inner, _) = expect(rest, TAG_OCTET_STRING)?;
    Some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for s in samples {
            let _ = parse_spki(s);
            let _ = parse_pkcs1(s);
            let _ = parse_pkcs8(s);
            let _ = parse_sec1(s, None);
        }
        // Every prefix of a real structure.
        let spki = [
            0x30, 0x0d, 0x30, 0x09, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x03, 0x02, 0x00,
            0x01,
        ];
        for i in 0..spki.len() {
            let _ = parse_spki(&spki[..i]);
        }
    }

    #[test]
    fn oid_strings() {
        assert_eq!(oid_to_string(OID_RSA), "1.2.840.113549.1.1.1");
        assert_eq!(oid_to_string(OID_P384), "1.3.132.0.34");
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert_eq!(bit_len(&[]), 0);
    }
}
