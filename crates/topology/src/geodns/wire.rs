//! A small DNS client: one `A` question over UDP ([`query_a`]), enough for the geo DNS's
//! readiness probe and for tests and benchmarks that resolve the site the way a user's
//! resolver would. Standard queries only (RFC 1035 §4), recursion not desired: the server
//! asked is the authority, so its answer is the one a user gets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// The `A` records of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The addresses, in the server's order.
    pub addrs: Vec<Ipv4Addr>,
    /// The smallest TTL among them (0 when there are none): how long a resolver may keep
    /// this answer before asking again.
    pub ttl: u32,
}

/// Why an answer was not one: the server refused or failed the question, or its packet is
/// not an answer to it. [`query_a`]'s errors carry it, so callers can tell a name the server
/// does not serve (`NxDomain`, `Refused`) from a broken exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// RCODE 3: the name does not exist in a zone the server serves.
    NxDomain,
    /// RCODE 5: the server does not answer for this name (not its zone) or this client.
    Refused,
    /// RCODE 2: the server failed to answer.
    ServFail,
    /// Another non-zero RCODE.
    Rcode(u8),
    /// The TC bit: the answer did not fit in a datagram.
    Truncated,
    /// The packet is not a well-formed answer to the question asked.
    Malformed(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NxDomain => f.write_str("NXDOMAIN: no such name"),
            DnsError::Refused => f.write_str("REFUSED: the server does not answer for this name"),
            DnsError::ServFail => f.write_str("SERVFAIL: the server failed"),
            DnsError::Rcode(c) => write!(f, "the server answered RCODE {c}"),
            DnsError::Truncated => f.write_str("the answer is truncated (TC bit)"),
            DnsError::Malformed(why) => write!(f, "not an answer to the question: {why}"),
        }
    }
}

impl std::error::Error for DnsError {}

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Compression pointers a name may follow before it is taken for a loop.
const MAX_POINTERS: usize = 32;

/// Asks `server` for the `A` records of `name` over UDP, from `source` when given (a client
/// address whose network the geo DNS maps to a region; port 0), and waits up to `timeout`
/// for the answer. Datagrams that are not the answer (another ID) are skipped.
///
/// # Errors
/// A socket error, no answer within `timeout`, or a [`DnsError`] (inside the `anyhow`
/// error: `downcast_ref::<DnsError>()`) when the answer is negative or not an answer.
pub fn query_a(
    server: SocketAddr,
    name: &str,
    source: Option<IpAddr>,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    exchange(server, name, source, None, timeout)
}

/// Like [`query_a`] from this host's address, but the question carries an EDNS client
/// subnet (RFC 7871): `network`/`prefix` is where the user is, as a recursive resolver
/// tells an authority on its users' behalf; the geo DNS maps that network, not the sender.
///
/// # Errors
/// As [`query_a`]'s, and a prefix longer than 32.
pub fn query_a_for_subnet(
    server: SocketAddr,
    name: &str,
    subnet: (Ipv4Addr, u8),
    timeout: Duration,
) -> anyhow::Result<Answer> {
    exchange(server, name, None, Some(subnet), timeout)
}

/// Sends one `A` question (with a client subnet when given) and reads its answer.
fn exchange(
    server: SocketAddr,
    name: &str,
    source: Option<IpAddr>,
    subnet: Option<(Ipv4Addr, u8)>,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let bind = match (source, server) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        (None, SocketAddr::V6(_)) => SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    // the geo DNS of two regions lives in a namespace: ask it from inside one only
    crate::netns::refuse_from_root(server.ip())?;
    let socket = UdpSocket::bind(bind)?;
    socket.connect(server)?;
    let mut id = [0u8; 2];
    getrandom::fill(&mut id).expect("the OS gives random bytes");
    let id = u16::from_be_bytes(id);
    let mut query = encode_query(id, name)?;
    if let Some((network, prefix)) = subnet {
        add_client_subnet(&mut query, network, prefix)?;
    }
    socket.send(&query)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        anyhow::ensure!(
            !left.is_zero(),
            "no answer from {server} within {timeout:?}"
        );
        socket.set_read_timeout(Some(left))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                anyhow::bail!("no answer from {server} within {timeout:?}")
            }
            Err(e) => return Err(e.into()),
        };
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue; // a late answer to an earlier question, or spoofed
        }
        return Ok(parse_answer(&buf[..n], id, name)?);
    }
}

/// A standard query for the `A` records of `name`: header with `id`, one question, RD off.
///
/// # Errors
/// `name` is not a valid DNS name (empty label, label over 63 bytes, name over 255).
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut packet = Vec::with_capacity(17 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    // flags 0: a query (QR 0), opcode QUERY, RD off; QDCOUNT 1, the other counts 0
    packet.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let bad = |why: &str| DnsError::Malformed(format!("name {name:?}: {why}"));
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(bad("empty or longer than 253 bytes"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("a label is empty or longer than 63 bytes"));
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&TYPE_A.to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(packet)
}

/// Adds to `query` (one question, nothing after it) an EDNS OPT record carrying the client
/// subnet `network`/`prefix` (RFC 7871 §6: family 1, the prefix's bytes of the address only).
///
/// # Errors
/// A prefix longer than 32.
pub fn add_client_subnet(
    query: &mut Vec<u8>,
    network: Ipv4Addr,
    prefix: u8,
) -> Result<(), DnsError> {
    if prefix > 32 {
        return Err(DnsError::Malformed(format!("a client subnet /{prefix}")));
    }
    let bytes = usize::from(prefix).div_ceil(8);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let address = (u32::from(network) & mask).to_be_bytes();
    // ARCOUNT 1
    query[10..12].copy_from_slice(&1u16.to_be_bytes());
    // the OPT record: root name, type 41, class = the UDP payload this client takes, TTL 0
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    query.extend_from_slice(&(8 + bytes as u16).to_be_bytes());
    // option 8 (client subnet): family 1 (IPv4), the source prefix, scope 0, the address
    query.extend_from_slice(&[0, 8]);
    query.extend_from_slice(&(4 + bytes as u16).to_be_bytes());
    query.extend_from_slice(&[0, 1, prefix, 0]);
    query.extend_from_slice(&address[..bytes]);
    Ok(())
}

/// Reads `packet` as the answer to the `A` query `id` for `name`: the ID and the question
/// must match, the RCODE must be 0 and the answer whole; the `A` records of `name` (class
/// IN) are its addresses, other records are skipped.
///
/// # Errors
/// A [`DnsError`]: a negative RCODE, the TC bit, or a packet that is not that answer.
pub fn parse_answer(packet: &[u8], id: u16, name: &str) -> Result<Answer, DnsError> {
    let bad = |why: String| DnsError::Malformed(why);
    if packet.len() < 12 {
        return Err(bad(format!(
            "{} bytes, shorter than a header",
            packet.len()
        )));
    }
    let word = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
    if word(0) != id {
        return Err(bad(format!("ID {} for question {id}", word(0))));
    }
    let flags = word(2);
    if flags & 0x8000 == 0 {
        return Err(bad("a query, not a response".into()));
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match flags & 0x000f {
        0 => {}
        2 => return Err(DnsError::ServFail),
        3 => return Err(DnsError::NxDomain),
        5 => return Err(DnsError::Refused),
        c => return Err(DnsError::Rcode(c as u8)),
    }
    let (questions, answers) = (word(4), word(6));
    if questions != 1 {
        return Err(bad(format!("{questions} questions, not the one asked")));
    }
    let mut reader = Reader { packet, at: 12 };
    let asked = reader.name()?;
    let (qtype, qclass) = (reader.u16()?, reader.u16()?);
    if !same_name(&asked, name) || qtype != TYPE_A || qclass != CLASS_IN {
        return Err(bad(format!(
            "the question is {asked} type {qtype} class {qclass}"
        )));
    }
    let mut answer = Answer {
        addrs: Vec::new(),
        ttl: u32::MAX,
    };
    for _ in 0..answers {
        let owner = reader.name()?;
        let (rtype, rclass, ttl, len) =
            (reader.u16()?, reader.u16()?, reader.u32()?, reader.u16()?);
        let data = reader.take(len as usize)?;
        if rtype == TYPE_A && rclass == CLASS_IN && same_name(&owner, name) {
            let octets: [u8; 4] = data
                .try_into()
                .map_err(|_| bad(format!("an A record of {len} bytes")))?;
            answer.addrs.push(Ipv4Addr::from(octets));
            answer.ttl = answer.ttl.min(ttl);
        }
    }
    if answer.addrs.is_empty() {
        answer.ttl = 0;
    }
    Ok(answer)
}

/// Whether two names are the same, ignoring case and a final dot.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// A cursor over a packet, every read bounds-checked.
struct Reader<'a> {
    packet: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.packet.len());
        let end = end.ok_or_else(|| {
            DnsError::Malformed(format!("ends inside a field at byte {}", self.at))
        })?;
        let bytes = &self.packet[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name, following compression pointers (RFC 1035 §4.1.4); the cursor ends after the
    /// name's bytes in place (after the first pointer, when there is one).
    fn name(&mut self) -> Result<String, DnsError> {
        let bad = |why: &str| DnsError::Malformed(format!("a name {why}"));
        let mut labels: Vec<String> = Vec::new();
        let mut at = self.at;
        let mut resume = None;
        for _ in 0..MAX_POINTERS {
            loop {
                let len = *self
                    .packet
                    .get(at)
                    .ok_or_else(|| bad("runs past the end"))? as usize;
                match len & 0xc0 {
                    0x00 if len == 0 => {
                        self.at = resume.unwrap_or(at + 1);
                        return Ok(labels.join("."));
                    }
                    0x00 => {
                        let label = self
                            .packet
                            .get(at + 1..at + 1 + len)
                            .ok_or_else(|| bad("runs past the end"))?;
                        labels.push(String::from_utf8_lossy(label).into_owned());
                        at += 1 + len;
                    }
                    0xc0 => {
                        let low = *self
                            .packet
                            .get(at + 1)
                            .ok_or_else(|| bad("runs past the end"))?
                            as usize;
                        resume.get_or_insert(at + 2);
                        at = ((len & 0x3f) << 8) | low;
                        break;
                    }
                    _ => return Err(bad("has a reserved label type")),
                }
            }
        }
        Err(bad("has a compression loop"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of an answer to question `id`: response, flags' low nibble `rcode`, one
    /// question, `answers` answers.
    fn header(id: u16, rcode: u8, answers: u16) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0x84, rcode, 0, 1]);
        p.extend_from_slice(&answers.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p
    }

    /// An answer the way servers write it: the question, then each record's owner as a
    /// pointer to the question's name at byte 12.
    fn answer(id: u16, records: &[([u8; 4], u32)]) -> Vec<u8> {
        let mut p = header(id, 0, records.len() as u16);
        p.extend_from_slice(&encode_query(id, "conduit.crescendo.test").unwrap()[12..]);
        for (addr, ttl) in records {
            p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            p.extend_from_slice(&ttl.to_be_bytes());
            p.extend_from_slice(&[0, 4]);
            p.extend_from_slice(addr);
        }
        p
    }

    #[test]
    fn a_query_is_one_question_for_an_a_record_without_recursion() {
        let q = encode_query(0xbeef, "conduit.crescendo.test.").unwrap();
        let mut want = vec![0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x07conduit\x09crescendo\x04test\x00\x00\x01\x00\x01");
        assert_eq!(q, want);
    }

    #[test]
    fn a_client_subnet_travels_in_an_opt_record_with_only_the_prefixs_bytes() {
        let mut q = encode_query(1, "a.test").unwrap();
        add_client_subnet(&mut q, Ipv4Addr::new(10, 250, 0, 12), 24).unwrap();
        assert_eq!(&q[10..12], &[0, 1]);
        assert_eq!(
            &q[24..],
            &[
                0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 10, 250, 0
            ]
        );
        let mut q = encode_query(1, "a.test").unwrap();
        add_client_subnet(&mut q, Ipv4Addr::new(10, 250, 0, 12), 0).unwrap();
        assert_eq!(
            &q[24..],
            &[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 8, 0, 8, 0, 4, 0, 1, 0, 0]
        );
        assert!(add_client_subnet(&mut q, Ipv4Addr::LOCALHOST, 33).is_err());
    }

    #[test]
    fn a_query_rejects_empty_and_overlong_labels() {
        assert!(encode_query(1, "a..b").is_err());
        assert!(encode_query(1, "").is_err());
        assert!(encode_query(1, &format!("{}.test", "x".repeat(64))).is_err());
    }

    #[test]
    fn an_answer_gives_its_addresses_through_compressed_names_and_the_smallest_ttl() {
        let p = answer(7, &[([10, 250, 0, 1], 5), ([10, 250, 0, 2], 3)]);
        let a = parse_answer(&p, 7, "Conduit.Crescendo.Test").unwrap();
        assert_eq!(
            a.addrs,
            vec![Ipv4Addr::new(10, 250, 0, 1), Ipv4Addr::new(10, 250, 0, 2)]
        );
        assert_eq!(a.ttl, 3);
    }

    #[test]
    fn records_of_other_names_and_types_are_not_addresses() {
        let mut p = header(9, 0, 2);
        p.extend_from_slice(&encode_query(9, "conduit.crescendo.test").unwrap()[12..]);
        // an NS record (type 2) of the site, its data a name pointing into the question
        p.extend_from_slice(&[
            0xc0, 12, 0, 2, 0, 1, 0, 0, 0, 5, 0, 5, 2, b'n', b's', 0xc0, 12,
        ]);
        // an A record of ns.conduit.crescendo.test (the name just written, at byte 52)
        p.extend_from_slice(&[0xc0, 52, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
        let a = parse_answer(&p, 9, "conduit.crescendo.test").unwrap();
        assert_eq!(
            a,
            Answer {
                addrs: vec![],
                ttl: 0
            }
        );
    }

    #[test]
    fn negative_answers_are_errors_named_for_their_rcode() {
        for (rcode, want) in [
            (3, DnsError::NxDomain),
            (2, DnsError::ServFail),
            (5, DnsError::Refused),
            (4, DnsError::Rcode(4)),
        ] {
            let mut p = header(3, rcode, 0);
            p.extend_from_slice(&encode_query(3, "x.test").unwrap()[12..]);
            assert_eq!(parse_answer(&p, 3, "x.test"), Err(want));
        }
    }

    #[test]
    fn a_truncated_answer_is_an_error() {
        let mut p = answer(5, &[([10, 0, 0, 1], 5)]);
        p[2] |= 0x02;
        assert_eq!(
            parse_answer(&p, 5, "conduit.crescendo.test"),
            Err(DnsError::Truncated)
        );
    }

    #[test]
    fn a_packet_cut_short_is_malformed_not_a_panic() {
        let p = answer(5, &[([10, 0, 0, 1], 5)]);
        for len in 0..p.len() {
            assert!(
                matches!(
                    parse_answer(&p[..len], 5, "conduit.crescendo.test"),
                    Err(DnsError::Malformed(_))
                ),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn an_answer_to_another_id_or_question_is_refused() {
        let p = answer(5, &[([10, 0, 0, 1], 5)]);
        assert!(matches!(
            parse_answer(&p, 6, "conduit.crescendo.test"),
            Err(DnsError::Malformed(_))
        ));
        assert!(matches!(
            parse_answer(&p, 5, "other.crescendo.test"),
            Err(DnsError::Malformed(_))
        ));
        let mut query = p.clone();
        query[2] &= 0x7f;
        assert!(matches!(
            parse_answer(&query, 5, "conduit.crescendo.test"),
            Err(DnsError::Malformed(_))
        ));
    }

    #[test]
    fn a_compression_loop_is_malformed() {
        let mut p = header(1, 0, 1);
        p.extend_from_slice(&encode_query(1, "a.test").unwrap()[12..]);
        p.extend_from_slice(&[0xc0, 24, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(
            parse_answer(&p, 1, "a.test"),
            Err(DnsError::Malformed(_))
        ));
    }
}
