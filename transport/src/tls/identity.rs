//! [`PeerIdentity`]: who the verified certificate of the other end says it is, read from
//! the certificate's DER (subject and subject alternative names) with a small, bounds-checked
//! reader.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The identity in the certificate the other end of a TLS connection presented, after
/// rustls verified it against the trusted CAs: its subject and its subject alternative names.
///
/// On a server with mutual TLS this is the client's identity, for hooks and handlers to
/// authorize with; on a client it is the server's.
///
/// ```
/// # fn check(id: &wirecall_transport::PeerIdentity) {
/// if id.common_name() == Some("billing-service") || id.dns_names().iter().any(|n| n == "billing.internal") {
///     // allowed
/// }
/// println!("peer: {id}"); // CN=billing-service,O=Acme [DNS:billing.internal]
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    subject: String,
    common_name: Option<String>,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    emails: Vec<String>,
    uris: Vec<String>,
    certificate: Vec<u8>,
}

impl PeerIdentity {
    /// Reads the identity out of a DER certificate. `None` if it is not a well-formed X.509
    /// certificate (which cannot happen for one rustls verified).
    pub fn from_der(certificate: &[u8]) -> Option<PeerIdentity> {
        parse_certificate(certificate)
    }

    /// The subject's distinguished name, written as in RFC 4514 (most specific first):
    /// `CN=alice,OU=payments,O=Acme,C=FR`. Attribute types without a short name are written
    /// as dotted OIDs. Empty when the certificate has an empty subject (identity in the SANs
    /// only).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's common name (the last `CN` attribute), if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The DNS names among the subject alternative names.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// The IP addresses among the subject alternative names.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
    }

    /// The e-mail addresses (rfc822Name) among the subject alternative names.
    pub fn emails(&self) -> &[String] {
        &self.emails
    }

    /// The URIs among the subject alternative names (SPIFFE ids look like
    /// `spiffe://example.org/service`).
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// The certificate itself, DER-encoded, for checks this type does not offer.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("subject", &self.subject)
            .field("dns_names", &self.dns_names)
            .field("ip_addresses", &self.ip_addresses)
            .field("emails", &self.emails)
            .field("uris", &self.uris)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for PeerIdentity {
    /// The subject, then the subject alternative names in brackets:
    /// `CN=alice,O=Acme [DNS:alice.example.org, IP:10.0.0.1]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sans: Vec<String> = Vec::new();
        sans.extend(self.dns_names.iter().map(|n| format!("DNS:{n}")));
        sans.extend(self.ip_addresses.iter().map(|n| format!("IP:{n}")));
        sans.extend(self.emails.iter().map(|n| format!("email:{n}")));
        sans.extend(self.uris.iter().map(|n| format!("URI:{n}")));
        match (self.subject.is_empty(), sans.is_empty()) {
            (false, true) => f.write_str(&self.subject),
            (true, false) => write!(f, "[{}]", sans.join(", ")),
            (false, false) => write!(f, "{} [{}]", self.subject, sans.join(", ")),
            (true, true) => f.write_str("(empty subject)"),
        }
    }
}

// --- a minimal DER reader -------------------------------------------------------------

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;

/// One TLV: its tag and contents.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

/// Reads TLVs one after another out of a byte slice.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next TLV (definite lengths only, single-byte tags, lengths up to 4 bytes).
    fn next(&mut self) -> Option<Tlv<'a>> {
        let (&tag, after) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags do not occur in what we read
        }
        let (&first, mut after) = after.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &after[..n] {
                len = (len << 8) | usize::from(b);
            }
            after = &after[n..];
            len
        };
        if after.len() < len {
            return None;
        }
        let (value, rest) = after.split_at(len);
        self.rest = rest;
        Some(Tlv { tag, value })
    }

    /// The next TLV, which must have `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let t = self.next()?;
        (t.tag == tag).then_some(t.value)
    }
}

fn parse_certificate(der: &[u8]) -> Option<PeerIdentity> {
    let cert = Der::new(der).expect(SEQUENCE)?;
    let tbs = Der::new(cert).expect(SEQUENCE)?;
    let mut tbs = Der::new(tbs);
    if tbs.peek_tag() == Some(0xa0) {
        tbs.next()?; // [0] version
    }
    tbs.next()?; // serial number
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let subject = tbs.expect(SEQUENCE)?;
    tbs.expect(SEQUENCE)?; // subject public key info
    let (subject, common_name) = parse_name(subject)?;
    let mut id = PeerIdentity {
        subject,
        common_name,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        certificate: der.to_vec(),
    };
    while let Some(field) = tbs.next() {
        if field.tag != 0xa3 {
            continue; // issuer/subject unique ids
        }
        let mut extensions = Der::new(Der::new(field.value).expect(SEQUENCE)?);
        while !extensions.is_empty() {
            let mut ext = Der::new(extensions.expect(SEQUENCE)?);
            let oid = ext.expect(OID)?;
            if ext.peek_tag() == Some(BOOLEAN) {
                ext.next()?;
            }
            let value = ext.expect(OCTET_STRING)?;
            // 2.5.29.17: subject alternative name
            if oid == [0x55, 0x1d, 0x11] {
                parse_sans(value, &mut id)?;
            }
        }
    }
    Some(id)
}

fn parse_sans(value: &[u8], id: &mut PeerIdentity) -> Option<()> {
    let mut names = Der::new(Der::new(value).expect(SEQUENCE)?);
    while let Some(name) = names.next() {
        let text = || String::from_utf8_lossy(name.value).into_owned();
        match name.tag {
            0x81 => id.emails.push(text()),
            0x82 => id.dns_names.push(text()),
            0x86 => id.uris.push(text()),
            0x87 => match name.value.len() {
                4 => {
                    let b: [u8; 4] = name.value.try_into().ok()?;
                    id.ip_addresses.push(IpAddr::V4(Ipv4Addr::from(b)));
                }
                16 => {
                    let b: [u8; 16] = name.value.try_into().ok()?;
                    id.ip_addresses.push(IpAddr::V6(Ipv6Addr::from(b)));
                }
                _ => {}
            },
            _ => {} // other names, directory names...
        }
    }
    Some(())
}

/// A Name as an RFC 4514 string (RDNs in reverse order) and its last common name.
fn parse_name(name: &[u8]) -> Option<(String, Option<String>)> {
    let mut rdns = Vec::new();
    let mut common_name = None;
    let mut seq = Der::new(name);
    while !seq.is_empty() {
        let mut set = Der::new(seq.expect(SET)?);
        let mut parts = Vec::new();
        while !set.is_empty() {
            let mut atv = Der::new(set.expect(SEQUENCE)?);
            let oid = atv.expect(OID)?;
            let value = atv.next()?;
            let text = decode_string(value.tag, value.value)?;
            if oid == [0x55, 0x04, 0x03] {
                common_name = Some(text.clone());
            }
            parts.push(format!("{}={}", attribute_name(oid), escape(&text)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some((rdns.join(","), common_name))
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        other => dotted(other),
    }
}

/// An OID's content bytes in dotted form.
fn dotted(oid: &[u8]) -> String {
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
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => Some(String::from_utf8_lossy(value).into_owned()),
        // TeletexString: read as Latin-1, what it holds in practice
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE
        0x1e => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        // UniversalString: UTF-32BE
        0x1c => Some(
            value
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect(),
        ),
        // Anything else: RFC 4514's #hex form.
        _ => Some(format!(
            "#{}",
            value.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )),
    }
}

/// Escapes a value for RFC 4514.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_is_none_not_a_panic() {
        assert!(PeerIdentity::from_der(&[]).is_none());
        assert!(PeerIdentity::from_der(&[0x30]).is_none());
        assert!(PeerIdentity::from_der(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(PeerIdentity::from_der(&[0x30, 0x03, 0x30, 0x01]).is_none());
        // Every prefix of a truncated header.
        let junk = [0x30, 0x82, 0x01, 0x00, 0x30, 0x81, 0xff, 0xa0, 0x03];
        for n in 0..junk.len() {
            assert!(PeerIdentity::from_der(&junk[..n]).is_none());
        }
    }

    #[test]
    fn dotted_oids_and_escaping() {
        assert_eq!(dotted(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#1"), "\\#1");
    }
}
