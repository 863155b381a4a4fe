//! HPACK's static table (RFC 7541 Appendix A) and the decoder's dynamic table (§2.3.2, §4).

use std::collections::VecDeque;

use bytes::Bytes;
use http::header::{self, HeaderName};

/// HTTP/2 pseudo-header fields (RFC 9113 §8.3; `:protocol` from RFC 8441).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    Authority,
    Method,
    Path,
    Scheme,
    Status,
    Protocol,
}

impl Pseudo {
    pub fn from_bytes(name: &[u8]) -> Option<Pseudo> {
        Some(match name {
            b":authority" => Pseudo::Authority,
            b":method" => Pseudo::Method,
            b":path" => Pseudo::Path,
            b":scheme" => Pseudo::Scheme,
            b":status" => Pseudo::Status,
            b":protocol" => Pseudo::Protocol,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pseudo::Authority => ":authority",
            Pseudo::Method => ":method",
            Pseudo::Path => ":path",
            Pseudo::Scheme => ":scheme",
            Pseudo::Status => ":status",
            Pseudo::Protocol => ":protocol",
        }
    }
}

/// A field name as decoded. Names that are not valid in HTTP/2 (upper case, characters outside
/// a token, unknown pseudo-headers) still take part in HPACK's state, so they are kept as
/// `Invalid` and left for the message layer to refuse (RFC 9113 §8.2.1: malformed, a stream
/// error, not a compression error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Pseudo(Pseudo),
    Header(HeaderName),
    Invalid(Bytes),
}

impl Name {
    /// Classify a literal name from the wire.
    pub fn parse(raw: &[u8]) -> Name {
        if raw.first() == Some(&b':') {
            return Pseudo::from_bytes(raw)
                .map_or_else(|| Name::Invalid(Bytes::copy_from_slice(raw)), Name::Pseudo);
        }
        // HeaderName::from_bytes would lower-case; HTTP/2 requires names already in lower case.
        if raw.iter().any(u8::is_ascii_uppercase) {
            return Name::Invalid(Bytes::copy_from_slice(raw));
        }
        match HeaderName::from_bytes(raw) {
            Ok(n) => Name::Header(n),
            Err(_) => Name::Invalid(Bytes::copy_from_slice(raw)),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Pseudo(p) => p.as_str().as_bytes(),
            Name::Header(h) => h.as_str().as_bytes(),
            Name::Invalid(b) => b,
        }
    }
}

/// The static table's names (index 1..=61), as borrowed forms.
pub(crate) enum StaticName {
    Pseudo(Pseudo),
    Header(HeaderName),
}

impl StaticName {
    pub(crate) fn to_name(&self) -> Name {
        match self {
            StaticName::Pseudo(p) => Name::Pseudo(*p),
            StaticName::Header(h) => Name::Header(h.clone()),
        }
    }
}

macro_rules! h {
    ($c:ident) => {
        StaticName::Header(header::$c)
    };
}
macro_rules! p {
    ($c:ident) => {
        StaticName::Pseudo(Pseudo::$c)
    };
}

/// RFC 7541 Appendix A; entry `i` is index `i + 1`.
pub(crate) static STATIC: [(StaticName, &str); 61] = [
    (p!(Authority), ""),
    (p!(Method), "GET"),
    (p!(Method), "POST"),
    (p!(Path), "/"),
    (p!(Path), "/index.html"),
    (p!(Scheme), "http"),
    (p!(Scheme), "https"),
    (p!(Status), "200"),
    (p!(Status), "204"),
    (p!(Status), "206"),
    (p!(Status), "304"),
    (p!(Status), "400"),
    (p!(Status), "404"),
    (p!(Status), "500"),
    (h!(ACCEPT_CHARSET), ""),
    (h!(ACCEPT_ENCODING), "gzip, deflate"),
    (h!(ACCEPT_LANGUAGE), ""),
    (h!(ACCEPT_RANGES), ""),
    (h!(ACCEPT), ""),
    (h!(ACCESS_CONTROL_ALLOW_ORIGIN), ""),
    (h!(AGE), ""),
    (h!(ALLOW), ""),
    (h!(AUTHORIZATION), ""),
    (h!(CACHE_CONTROL), ""),
    (h!(CONTENT_DISPOSITION), ""),
    (h!(CONTENT_ENCODING), ""),
    (h!(CONTENT_LANGUAGE), ""),
    (h!(CONTENT_LENGTH), ""),
    (h!(CONTENT_LOCATION), ""),
    (h!(CONTENT_RANGE), ""),
    (h!(CONTENT_TYPE), ""),
    (h!(COOKIE), ""),
    (h!(DATE), ""),
    (h!(ETAG), ""),
    (h!(EXPECT), ""),
    (h!(EXPIRES), ""),
    (h!(FROM), ""),
    (h!(HOST), ""),
    (h!(IF_MATCH), ""),
    (h!(IF_MODIFIED_SINCE), ""),
    (h!(IF_NONE_MATCH), ""),
    (h!(IF_RANGE), ""),
    (h!(IF_UNMODIFIED_SINCE), ""),
    (h!(LAST_MODIFIED), ""),
    (h!(LINK), ""),
    (h!(LOCATION), ""),
    (h!(MAX_FORWARDS), ""),
    (h!(PROXY_AUTHENTICATE), ""),
    (h!(PROXY_AUTHORIZATION), ""),
    (h!(RANGE), ""),
    (h!(REFERER), ""),
    (h!(REFRESH), ""),
    (h!(RETRY_AFTER), ""),
    (h!(SERVER), ""),
    (h!(SET_COOKIE), ""),
    (h!(STRICT_TRANSPORT_SECURITY), ""),
    (h!(TRANSFER_ENCODING), ""),
    (h!(USER_AGENT), ""),
    (h!(VARY), ""),
    (h!(VIA), ""),
    (h!(WWW_AUTHENTICATE), ""),
];

/// The static-table index of a header name, for the encoder (a `match`, so no table scan).
pub(crate) fn static_name_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "accept-charset" => 15,
        "accept-encoding" => 16,
        "accept-language" => 17,
        "accept-ranges" => 18,
        "accept" => 19,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "authorization" => 23,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "cookie" => 32,
        "date" => 33,
        "etag" => 34,
        "expect" => 35,
        "expires" => 36,
        "from" => 37,
        "host" => 38,
        "if-match" => 39,
        "if-modified-since" => 40,
        "if-none-match" => 41,
        "if-range" => 42,
        "if-unmodified-since" => 43,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "max-forwards" => 47,
        "proxy-authenticate" => 48,
        "proxy-authorization" => 49,
        "range" => 50,
        "referer" => 51,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "transfer-encoding" => 57,
        "user-agent" => 58,
        "vary" => 59,
        "via" => 60,
        "www-authenticate" => 61,
        _ => return None,
    })
}

/// Overhead the size of an entry counts beyond its name and value (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// The decoder's dynamic table. Entries own their bytes (copied on insert), so an entry never
/// keeps a whole read buffer alive.
#[derive(Debug, Default)]
pub struct DynamicTable {
    entries: VecDeque<(Name, Bytes)>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    pub fn new(max_size: usize) -> DynamicTable {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entry by HPACK index (62 is the newest), if present.
    pub fn get(&self, index: usize) -> Option<&(Name, Bytes)> {
        self.entries.get(index.checked_sub(62)?)
    }

    pub fn set_max_size(&mut self, max: usize) {
        self.max_size = max;
        self.evict_to(max);
    }

    /// Add an entry, evicting old ones; an entry larger than the table empties it (§4.4).
    pub fn insert(&mut self, name: Name, value: &[u8]) {
        let size = name.as_bytes().len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        let name = match name {
            Name::Invalid(b) => Name::Invalid(Bytes::copy_from_slice(&b)),
            n => n,
        };
        self.entries
            .push_front((name, Bytes::copy_from_slice(value)));
        self.size += size;
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= n.as_bytes().len() + v.len() + ENTRY_OVERHEAD,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}
