//! Address parsing and printing: round trips and every parse error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use wirecall_transport::{Address, Host, Origin, TransportError};

fn parse(s: &str) -> Address {
    s.parse()
        .unwrap_or_else(|e| panic!("`{s}` should parse: {e}"))
}

fn parse_err(s: &str) -> TransportError {
    match s.parse::<Address>() {
        Ok(addr) => panic!("`{s}` should not parse, got {addr:?}"),
        Err(e) => e,
    }
}

/// Asserts that `s` fails with an `InvalidAddress` error whose message contains every
/// fragment, and that it is classified as the user's fault and not retryable.
fn assert_rejected(s: &str, fragments: &[&str]) {
    let err = parse_err(s);
    let msg = err.to_string();
    for fragment in fragments {
        assert!(
            msg.contains(fragment),
            "error for `{s}` should contain {fragment:?}, got: {msg}"
        );
    }
    assert!(
        matches!(err, TransportError::InvalidAddress { .. }),
        "{err:?}"
    );
    assert_eq!(err.origin(), Origin::User);
    assert!(!err.is_retryable());
    assert_eq!(err.address(), s.trim());
    assert_eq!(err.io_kind(), None);
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn canonical_forms_round_trip() {
    for text in [
        "tcp://127.0.0.1:4000",
        "tcp://0.0.0.0:0",
        "tcp://[::1]:4000",
        "tcp://[::]:0",
        "tcp://[2001:db8::8a2e:370:7334]:65535",
        "tcp://[::ffff:192.0.2.1]:80",
        "tcp://localhost:4000",
        "tcp://my-host.example.org:1",
        "tcp://under_score.local.:9",
        "unix:///tmp/wirecall.sock",
        "unix:///tmp/dir with space/a.sock",
        "unix://relative/path.sock",
        "unix://x.sock",
        "mem://my-service",
        "mem://0",
        "tls://127.0.0.1:4000",
        "tls://[::1]:4443",
        "tls://example.org:443",
        "tls+unix:///tmp/wirecall.sock",
        "mem://",
        "mem://ünïcode-name",
    ] {
        let addr = parse(text);
        assert_eq!(addr.to_string(), text, "printing {addr:?}");
        assert_eq!(parse(&addr.to_string()), addr);
    }
}

#[test]
fn parsed_values_are_the_expected_variants() {
    assert_eq!(
        parse("tcp://127.0.0.1:4000"),
        Address::Tcp {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: 4000
        }
    );
    assert_eq!(parse("tcp://[::1]:0"), Address::tcp(Ipv6Addr::LOCALHOST, 0));
    assert_eq!(
        parse("tcp://localhost:80"),
        Address::tcp(Host::Name("localhost".into()), 80)
    );
    assert_eq!(parse("unix:///a/b.sock"), Address::unix("/a/b.sock"));
    assert_eq!(parse("unix://a/b.sock"), Address::unix("a/b.sock"));
    assert_eq!(parse("mem://svc"), Address::mem("svc"));

    let tcp = parse("tcp://[::1]:7");
    assert_eq!(tcp.scheme(), "tcp");
    assert_eq!(tcp.port(), Some(7));
    assert_eq!(tcp.path(), None);
    let unix = parse("unix:///s.sock");
    assert_eq!(unix.scheme(), "unix");
    assert_eq!(unix.path(), Some(Path::new("/s.sock")));
    assert_eq!(unix.port(), None);
    let mem = parse("mem://m");
    assert_eq!(mem.scheme(), "mem");
    assert_eq!(mem.mem_name(), Some("m"));
}

#[test]
fn lenient_inputs_normalise() {
    // Surrounding whitespace (say, from an environment variable) and scheme case are forgiven;
    // leading zeros in a port are read as decimal.
    assert_eq!(
        parse("  tcp://127.0.0.1:4000\n"),
        parse("tcp://127.0.0.1:4000")
    );
    assert_eq!(parse("TCP://127.0.0.1:4000"), parse("tcp://127.0.0.1:4000"));
    assert_eq!(parse("Unix:///x.sock").to_string(), "unix:///x.sock");
    assert_eq!(parse("MEM://a").to_string(), "mem://a");
    assert_eq!(parse("tcp://127.0.0.1:04000").port(), Some(4000));
    assert_eq!(
        parse("tcp://[0:0:0:0:0:0:0:1]:1").to_string(),
        "tcp://[::1]:1"
    );
}

#[test]
fn socket_addr_conversion_matches_parsing() {
    let v4: SocketAddr = "10.1.2.3:99".parse().unwrap();
    assert_eq!(Address::from(v4), parse("tcp://10.1.2.3:99"));
    let v6: SocketAddr = "[fe80::1]:99".parse().unwrap();
    assert_eq!(Address::from(v6), parse("tcp://[fe80::1]:99"));
    assert_eq!(Address::try_from("mem://x").unwrap(), Address::mem("x"));
}

#[test]
fn host_display() {
    assert_eq!(Host::from(Ipv4Addr::new(1, 2, 3, 4)).to_string(), "1.2.3.4");
    assert_eq!(Host::from(Ipv6Addr::LOCALHOST).to_string(), "[::1]");
    assert_eq!(Host::Name("a.b".into()).to_string(), "a.b");
}

#[test]
fn missing_port() {
    assert_rejected(
        "tcp://127.0.0.1",
        &[
            "missing port in `tcp://127.0.0.1`",
            "tcp://HOST:PORT",
            "e.g. tcp://127.0.0.1:4000",
            "port 0 picks a free one",
        ],
    );
    assert_rejected("tcp://127.0.0.1:", &["missing port in `tcp://127.0.0.1:`"]);
    assert_rejected("tcp://[::1]", &["missing port in `tcp://[::1]`"]);
    assert_rejected("tcp://[::1]:", &["missing port in `tcp://[::1]:`"]);
    assert_rejected("tcp://localhost", &["missing port in `tcp://localhost`"]);
}

#[test]
fn bad_ports() {
    assert_rejected(
        "tcp://127.0.0.1:65536",
        &["port `65536`", "out of range", "0 to 65535"],
    );
    assert_rejected("tcp://127.0.0.1:99999999999999999999", &["out of range"]);
    assert_rejected(
        "tcp://127.0.0.1:http",
        &["invalid port `http`", "0 to 65535"],
    );
    assert_rejected("tcp://127.0.0.1:+80", &["invalid port `+80`"]);
    assert_rejected("tcp://127.0.0.1:-1", &["invalid port `-1`"]);
}

#[test]
fn missing_or_bad_hosts() {
    assert_rejected(
        "tcp://",
        &[
            "missing host and port in `tcp://`",
            "e.g. tcp://127.0.0.1:4000",
        ],
    );
    assert_rejected(
        "tcp://:4000",
        &["missing host in `tcp://:4000`", "127.0.0.1"],
    );
    assert_rejected(
        "tcp://256.1.1.1:80",
        &["`256.1.1.1`", "not a valid IPv4 address"],
    );
    assert_rejected("tcp://1.2.3:80", &["`1.2.3`", "not a valid IPv4 address"]);
    assert_rejected(
        "tcp://bad host:80",
        &["invalid character ' '", "`bad host`"],
    );
    assert_rejected("tcp://a..b:80", &["empty label in host `a..b`"]);
    assert_rejected("tcp://.a:80", &["empty label"]);
    let long = format!("tcp://{}:80", "a".repeat(254));
    assert_rejected(&long, &["longer than 253"]);
}

#[test]
fn ipv6_mistakes() {
    assert_rejected(
        "tcp://::1:4000",
        &["IPv6 address without brackets", "tcp://[::1]:4000"],
    );
    assert_rejected("tcp://[::1:4000", &["missing `]`"]);
    assert_rejected("tcp://[nope]:4000", &["`nope`", "not a valid IPv6 address"]);
    assert_rejected("tcp://[fe80::1%eth0]:4000", &["zone ids"]);
    assert_rejected(
        "tcp://[::1]x:4000",
        &["unexpected `x:4000` after the IPv6 address"],
    );
}

#[test]
fn tcp_extras_are_refused() {
    assert_rejected(
        "tcp://127.0.0.1:4000/",
        &["unexpected `/`", "no path, query or fragment"],
    );
    assert_rejected("tcp://127.0.0.1:4000/rpc", &["unexpected `/rpc`"]);
    assert_rejected("tcp://127.0.0.1:4000?x=1", &["unexpected `?x=1`"]);
    assert_rejected("tcp://127.0.0.1:4000#f", &["unexpected `#f`"]);
    assert_rejected("tcp://user@127.0.0.1:4000", &["user info"]);
}

#[test]
fn unknown_and_missing_schemes() {
    assert_rejected(
        "http://127.0.0.1:80",
        &[
            "unknown scheme `http` in `http://127.0.0.1:80`",
            "tcp, unix, mem, tls and tls+unix",
            "tcp://127.0.0.1:4000",
            "unix:///tmp/wirecall.sock",
            "mem://my-service",
        ],
    );
    assert_rejected("ipc:///tmp/x", &["unknown scheme `ipc`", "unix:///PATH"]);
    assert_rejected("://x", &["unknown scheme ``"]);
    assert_rejected(
        "127.0.0.1:4000",
        &[
            "missing scheme in `127.0.0.1:4000`",
            "did you mean tcp://127.0.0.1:4000?",
        ],
    );
    assert_rejected(
        "/tmp/x.sock",
        &["missing scheme", "did you mean unix:///tmp/x.sock?"],
    );
    assert_rejected(
        "localhost",
        &[
            "missing scheme in `localhost`",
            "tcp, unix, mem, tls and tls+unix",
        ],
    );
    assert_rejected("", &["empty address", "tcp://127.0.0.1:4000"]);
    assert_rejected("   ", &["empty address"]);
}

#[test]
fn bad_unix_and_mem() {
    assert_rejected(
        "unix://",
        &["missing path in `unix://`", "unix:///tmp/wirecall.sock"],
    );
    assert_rejected("unix:///tmp/a\0b", &["NUL byte"]);
    assert_rejected("mem://a/b", &["invalid character '/'", "mem://my-service"]);
    assert_rejected("mem://a b", &["invalid character ' '"]);
    assert_rejected("mem://a\tb", &["invalid character '\\t'"]);
    let long = format!("mem://{}", "n".repeat(256));
    assert_rejected(&long, &["longer than 255"]);
}
