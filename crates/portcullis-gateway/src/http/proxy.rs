//! The PROXY protocol (HAProxy's, versions 1 and 2) from trusted load balancers: behind one,
//! every connection comes from the balancer's address, and the per-address limits (connections,
//! failed sign-ins) would put every client in one bucket. A connection from a source listed in
//! `[server] proxy_protocol` must open with a PROXY header, whose client address then counts as
//! the connection's source; from anywhere else none is read (a client cannot claim an address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;

/// The v2 signature.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most this long, CRLF included.
const MAX_V1: usize = 107;

/// An address range (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    base: IpAddr,
    bits: u8,
}

impl Net {
    /// `text` as an address or a CIDR range.
    pub fn parse(text: &str) -> Option<Self> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let base: IpAddr = address.parse().ok()?;
        let most = if base.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(most);
        (bits <= most).then_some(Self { base, bits })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Read the PROXY header `stream` opens with (nothing after it): the client's address it
/// conveys, or `from` itself for a v2 `LOCAL` (the balancer's own check) or v1 `UNKNOWN`.
/// Anything else is an error: the connection is not served.
pub(crate) async fn read_header(
    stream: &mut tokio::net::TcpStream,
    from: SocketAddr,
) -> Result<SocketAddr, &'static str> {
    let mut start = [0u8; 5];
    stream
        .read_exact(&mut start)
        .await
        .map_err(|_| "closed before a PROXY header")?;
    if &start == b"PROXY" {
        return v1(stream, from).await;
    }
    if start != SIGNATURE[..5] {
        return Err("no PROXY header");
    }
    let mut rest = [0u8; 11];
    stream
        .read_exact(&mut rest)
        .await
        .map_err(|_| "a cut PROXY header")?;
    if rest[..7] != SIGNATURE[5..] {
        return Err("no PROXY header");
    }
    let (version_command, family) = (rest[7], rest[8]);
    let length = usize::from(u16::from_be_bytes([rest[9], rest[10]]));
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|_| "a cut PROXY header")?;
    match version_command {
        0x20 => Ok(from),
        0x21 => match family {
            // TCP over IPv4, then over IPv6: source address first, source port after both.
            0x11 if body.len() >= 12 => Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(body[0], body[1], body[2], body[3])),
                u16::from_be_bytes([body[8], body[9]]),
            )),
            0x21 if body.len() >= 36 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[..16]);
                Ok(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(octets)),
                    u16::from_be_bytes([body[32], body[33]]),
                ))
            }
            // UNSPEC: the balancer's own address (a health check, say).
            0x00 => Ok(from),
            0x11 | 0x21 => Err("a PROXY header with a short address block"),
            _ => Err("a PROXY header of a family other than TCP over IPv4 or IPv6"),
        },
        _ => Err("a PROXY header of an unknown version"),
    }
}

async fn v1(
    stream: &mut tokio::net::TcpStream,
    from: SocketAddr,
) -> Result<SocketAddr, &'static str> {
    // Byte by byte: what follows the line is the client's, and is left in the stream.
    let mut line = b"PROXY".to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= MAX_V1 {
            return Err("a PROXY line too long");
        }
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|_| "a cut PROXY header")?;
        line.push(byte[0]);
    }
    let text = std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| "a PROXY line not text")?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(from),
        ["PROXY", family @ ("TCP4" | "TCP6"), source, _, port, _] => {
            let ip: IpAddr = source
                .parse()
                .map_err(|_| "a PROXY line with a bad address")?;
            // The protocol names the address's family: one that does not match is no header
            // a balancer writes.
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err("a PROXY line whose address is not of its protocol");
            }
            let port: u16 = port.parse().map_err(|_| "a PROXY line with a bad port")?;
            Ok(SocketAddr::new(ip, port))
        }
        _ => Err("a PROXY line not understood"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_they_say() {
        let net = Net::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.9.9.9".parse().unwrap()),
            "v4-mapped"
        );
        let one = Net::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Net::parse("::1/128")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            Net::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!(Net::parse("10.0.0.0/33"), None);
        assert_eq!(Net::parse("nope"), None);
    }
}
