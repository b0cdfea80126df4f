//! Read access to request headers, independent of the HTTP stack.

/// Case-insensitive header access.
///
/// Callers pass names in lowercase (that is how `SignedHeaders` spells them); the
/// implementations still compare case-insensitively so that a map holding `Host` or
/// `X-Sdk-Date` as the client spelled them works. If a name occurs more than once the
/// first value is returned: the SDK never repeats a signed header.
pub trait HeaderLookup {
    fn header(&self, lowercase_name: &str) -> Option<&str>;
}

impl<T: HeaderLookup + ?Sized> HeaderLookup for &T {
    fn header(&self, lowercase_name: &str) -> Option<&str> {
        (**self).header(lowercase_name)
    }
}

/// `&[(&str, &str)]`, `&[(String, String)]`, … — a list of (name, value) pairs.
impl<K: AsRef<str>, V: AsRef<str>> HeaderLookup for [(K, V)] {
    fn header(&self, lowercase_name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(lowercase_name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderLookup for Vec<(K, V)> {
    fn header(&self, lowercase_name: &str) -> Option<&str> {
        self.as_slice().header(lowercase_name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> HeaderLookup for [(K, V); N] {
    fn header(&self, lowercase_name: &str) -> Option<&str> {
        self.as_slice().header(lowercase_name)
    }
}

impl HeaderLookup for http::HeaderMap {
    fn header(&self, lowercase_name: &str) -> Option<&str> {
        // `HeaderValue::to_str` only admits visible ASCII; UTF-8 (e.g. a User-Agent with
        // a non-ASCII app name) is still what the client signed, so accept any UTF-8.
        // An invalid name (from an attacker-chosen SignedHeaders) simply finds nothing.
        self.get(lowercase_name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
    }
}
