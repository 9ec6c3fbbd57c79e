//! Property tests: every address prints to text that parses back to it, and parsing arbitrary
//! text never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wirecall_transport::{Address, Host};

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        any::<u32>().prop_map(|ip| Host::Ip(IpAddr::V4(Ipv4Addr::from(ip)))),
        any::<u128>().prop_map(|ip| Host::Ip(IpAddr::V6(Ipv6Addr::from(ip)))),
        // Labels separated by dots, each starting with a letter so the name cannot be
        // mistaken for an IPv4 address.
        proptest::collection::vec("[a-zA-Z][a-zA-Z0-9_-]{0,20}", 1..5)
            .prop_map(|labels| Host::Name(labels.join("."))),
    ]
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        (host(), any::<u16>()).prop_map(|(host, port)| Address::tcp(host, port)),
        // Any UTF-8 path without NUL, absolute or relative.
        "/?[^\u{0}]{1,80}"
            .prop_filter("surrounding whitespace is trimmed", |p| p.trim() == p)
            .prop_map(Address::unix),
        "[^/\\s\\p{Cc}]{0,40}".prop_map(Address::mem),
    ]
}

proptest! {
    #[test]
    fn print_then_parse_is_identity(addr in address()) {
        let text = addr.to_string();
        let parsed: Address = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&parsed, &addr);
        prop_assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,60}") {
        if let Ok(addr) = text.parse::<Address>() {
            // Whatever parses prints canonically and is stable from then on.
            let printed = addr.to_string();
            prop_assert_eq!(printed.parse::<Address>().ok(), Some(addr));
        }
    }

    #[test]
    fn parsing_url_like_text_never_panics(
        scheme in "(tcp|unix|mem|TCP|http|)",
        rest in "[\\[\\]:/@?#0-9a-f. %_-]{0,40}",
    ) {
        let text = format!("{scheme}://{rest}");
        if let Ok(addr) = text.parse::<Address>() {
            prop_assert_eq!(addr.to_string().parse::<Address>().ok(), Some(addr));
        }
    }
}
